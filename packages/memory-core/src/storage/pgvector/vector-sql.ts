import { ValidationError } from '../../errors';
import { EMBEDDING_DIMENSION } from '../../memory/memory.schemas';

/**
 * pgvector's text form of a vector (`[0.1,0.2,...]`), as `pgvector`'s `toSql` writes it. The npm
 * package itself is ESM-only, which this CommonJS build (and jest) cannot `require`.
 */
export function toVectorSql(vector: Float32Array | number[], dimension = EMBEDDING_DIMENSION): string {
  if (vector.length !== dimension) {
    throw new ValidationError(
      `embeddings have ${dimension} dimensions, got ${vector.length}`,
      {
        expected: dimension,
        actual: vector.length,
      },
      'invalid_embedding',
    );
  }
  const parts = new Array<string>(vector.length);
  for (let i = 0; i < vector.length; i += 1) {
    const x = vector[i]!;
    if (!Number.isFinite(x))
      throw new ValidationError('embeddings hold finite numbers only', { index: i }, 'invalid_embedding');
    parts[i] = String(x);
  }
  return `[${parts.join(',')}]`;
}
