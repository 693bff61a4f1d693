import { PGVECTOR_RECOMMENDED, pgvectorWarnings } from './pgvector-version';

describe('pgvectorWarnings', () => {
  it('warns about a version before both fixes, naming each and the version to upgrade to', () => {
    const [warning, ...rest] = pgvectorWarnings('0.8.0');
    expect(rest).toEqual([]);
    expect(warning).toMatch(/^pgvector 0\.8\.0 predates/);
    expect(warning).toContain('0.8.3: possible HNSW index corruption');
    expect(warning).toContain('0.8.4: errors on inserts');
    expect(warning).toMatch(/upgrade to 0\.8\.4 or later$/);
  });

  it('names only the fix a version lacks', () => {
    const [warning] = pgvectorWarnings('0.8.3');
    expect(warning).not.toContain('0.8.3:');
    expect(warning).toContain('0.8.4: errors on inserts');
  });

  it('compares versions as numbers, not text', () => {
    expect(pgvectorWarnings('0.7.10')).toHaveLength(1);
    expect(pgvectorWarnings('0.10.0')).toEqual([]);
    expect(pgvectorWarnings('1.0.0')).toEqual([]);
  });

  it('is quiet from the recommended version on, and for a version it cannot read', () => {
    expect(PGVECTOR_RECOMMENDED).toBe('0.8.4');
    expect(pgvectorWarnings('0.8.4')).toEqual([]);
    expect(pgvectorWarnings('0.8.6')).toEqual([]);
    expect(pgvectorWarnings('devel')).toEqual([]);
  });
});
