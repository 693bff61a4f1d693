/**
 * pgvector releases with known faults that touch this service's data. The service deletes memories on
 * request, so VACUUM cleans the HNSW graph; before 0.8.3 that could corrupt the index, and before
 * 0.8.4 inserts during it could fail (pgvector's CHANGELOG).
 */
const FIXES = [
  { version: [0, 8, 3], fix: 'possible HNSW index corruption when VACUUM cleans the graph after deletes' },
  { version: [0, 8, 4], fix: 'errors on inserts while VACUUM cleans the HNSW graph' },
] as const;

/** The oldest pgvector without those faults. */
export const PGVECTOR_RECOMMENDED = FIXES.map((f) => f.version.join('.')).at(-1)!;

function parse(version: string): number[] | undefined {
  const match = /^(\d+)\.(\d+)\.(\d+)/.exec(version);
  return match ? match.slice(1).map(Number) : undefined;
}

function older(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < b.length; i += 1) {
    if (a[i]! !== b[i]!) return a[i]! < b[i]!;
  }
  return false;
}

/** What an operator should know about a pgvector version: one warning, or none. */
export function pgvectorWarnings(version: string): string[] {
  const parsed = parse(version);
  if (!parsed) return [];
  const missing = FIXES.filter((f) => older(parsed, f.version));
  if (missing.length === 0) return [];
  const fixes = missing.map((f) => `${f.version.join('.')}: ${f.fix}`).join('; ');
  return [
    `pgvector ${version} predates fixes this service relies on (${fixes}); upgrade to ${PGVECTOR_RECOMMENDED} or later`,
  ];
}
