/**
 * `items` cut into consecutive parts of at most `size`, in order: for work that must not hold a
 * server up with one huge command (Redis pipelines, MGET, Chroma's batch limit, a statement's rows).
 */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  if (!Number.isInteger(size) || size < 1)
    throw new RangeError(`chunk size must be a positive integer, got ${size}`);
  const out: T[][] = [];
  for (let start = 0; start < items.length; start += size) out.push(items.slice(start, start + size));
  return out;
}
