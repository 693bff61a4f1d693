import { ValidationError } from '../../errors';
import { EMBEDDING_DIMENSION } from '../../memory/memory.schemas';

/**
 * pgvector's text form of a vector (`[0.1,0.2,...]`), as `pgvector`'s `toSql` writes it. The npm
 * package itself is ESM-only, which this CommonJS build (and jest) cannot `require`.
 */
export function toVectorSql(vector: Float32Array | number[], dimension = EMBEDDING_DIMENSION): string {
  checkVector(vector, dimension);
  const parts = new Array<string>(vector.length);
  for (let i = 0; i < vector.length; i += 1) parts[i] = String(vector[i]);
  return `[${parts.join(',')}]`;
}

/** Fails with `invalid_embedding` unless the vector has `dimension` finite numbers. */
export function checkVector(vector: ArrayLike<number>, dimension = EMBEDDING_DIMENSION): void {
  if (vector.length !== dimension) {
    throw new ValidationError(
      `embeddings have ${dimension} dimensions, got ${vector.length}`,
      { expected: dimension, actual: vector.length },
      'invalid_embedding',
    );
  }
  for (let i = 0; i < vector.length; i += 1) {
    if (!Number.isFinite(vector[i]))
      throw new ValidationError('embeddings hold finite numbers only', { index: i }, 'invalid_embedding');
  }
}

/**
 * A `vector[]` parameter in PostgreSQL's binary array format, each element in pgvector's binary
 * form (int16 dimensions, int16 unused, big-endian float4s). node-postgres sends a Buffer parameter
 * as binary, so vectors skip the text round trip: formatting 384 numbers per vector here and
 * parsing them in PostgreSQL cost more than the rest of a bulk insert without the HNSW index.
 * `elementOid` is the `vector` type's OID in this database (an extension type has no fixed OID).
 */
export function encodeVectorArray(vectors: ArrayLike<number>[], elementOid: number): Buffer {
  const dimension = vectors[0]?.length ?? 0;
  const elementBytes = 4 + 4 * dimension;
  const buffer = Buffer.allocUnsafe(20 + vectors.length * (4 + elementBytes));
  let at = buffer.writeInt32BE(1, 0); // dimensions of the array
  at = buffer.writeInt32BE(0, at); // no NULL elements
  at = buffer.writeUInt32BE(elementOid, at);
  at = buffer.writeInt32BE(vectors.length, at);
  at = buffer.writeInt32BE(1, at); // lower bound
  for (const vector of vectors) {
    if (vector.length !== dimension)
      throw new ValidationError('embeddings of one batch have one dimension', undefined, 'invalid_embedding');
    at = buffer.writeInt32BE(elementBytes, at);
    at = writeVector(buffer, vector, at);
  }
  return buffer;
}

/**
 * A `vector` parameter in pgvector's binary form, sent as binary for the reason `encodeVectorArray`
 * gives: formatting a query's 384 numbers as text took 0.3 ms of each search in the search service.
 */
export function encodeVector(vector: ArrayLike<number>): Buffer {
  const buffer = Buffer.allocUnsafe(4 + 4 * vector.length);
  writeVector(buffer, vector, 0);
  return buffer;
}

/** pgvector's binary form of one vector (int16 dimensions, int16 unused, big-endian float4s). */
function writeVector(buffer: Buffer, vector: ArrayLike<number>, at: number): number {
  at = buffer.writeInt16BE(vector.length, at);
  at = buffer.writeInt16BE(0, at);
  for (let i = 0; i < vector.length; i += 1) at = buffer.writeFloatBE(vector[i]!, at);
  return at;
}
