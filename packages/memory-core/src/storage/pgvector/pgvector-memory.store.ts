import { createHash } from 'node:crypto';
import { Client, Pool, type PoolClient, type QueryResultRow } from 'pg';
import { ConflictError, ValidationError } from '../../errors';
import type { Logger } from '../../logging';
import { chunks } from '../../runtime/chunks';
import type { MemoryFilter } from '../../memory/filter';
import {
  METADATA_KEY_PATTERN,
  MemoryLimits,
  RESERVED_METADATA_KEYS,
  type Memory,
  type MemoryRecord,
  type SearchHit,
} from '../../memory/memory.schemas';
import type {
  ListResult,
  MemoryStats,
  MemoryStore,
  Page,
  ScopeDeletion,
  StoreStatus,
  UpsertResult,
} from '../memory-store';
import { filterToSql, SqlParams } from './filter-sql';
import { runMigrations } from './migration-runner';
import { pgvectorWarnings } from './pgvector-version';
import { errorMessage, isConnectionError, quoteIdent, toStoreError } from './pg-errors';
import { checkVector, encodeVector, encodeVectorArray } from './vector-sql';

export interface PgvectorStoreOptions {
  /**
   * A pool owned by the caller (not closed by `close()`). One of `pool` or `connectionString` is
   * required. A search leaves its settings (`hnsw.*`, `enable_sort` and `jit` off) on the connection
   * it used, for the next search; the store's other operations reset `enable_sort` and `jit` first,
   * but the caller's own queries on the pool do not.
   */
  pool?: Pool;
  /** Used to create a pool the store owns. */
  connectionString?: string;
  /** Schema that holds the tables. @defaultValue `'public'` */
  schema?: string;
  /** HNSW candidate list size per search (`hnsw.ef_search`), raised to `k` × overfetch when smaller. @defaultValue 400 */
  efSearch?: number;
  /**
   * `hnsw.ef_search` of a search in a user's own graph (`maintainTenantIndexes`), where the user
   * filter discards no candidates, so a smaller list reaches the same recall. @defaultValue 200
   */
  tenantEfSearch?: number;
  /**
   * A search whose filtered scope has at most this many memories scans them exactly (no index): exact
   * results, and faster than the graph for small scopes. @defaultValue `DEFAULT_EXACT_SCAN_THRESHOLD`
   */
  exactScanThreshold?: number;
  /**
   * Larger scopes that the shared graph serves badly, scanned exactly too (`SparseExactScan`);
   * `false`: only scopes within `exactScanThreshold`. @defaultValue `DEFAULT_SPARSE_EXACT_SCAN`
   */
  sparseExactScan?: SparseExactScan | false;
  /**
   * An HNSW search takes `k × overfetch` candidates from the (half-precision) index and keeps the `k`
   * nearest by exact distance. Candidates of a relaxed-order iterative scan are not the scope's
   * nearest in order, so asking for a few more raises recall, most for filtered searches.
   * @defaultValue 2
   */
  overfetch?: number;
  /** `maintenance_work_mem` of an HNSW build after a bulk load (`buildVectorIndex`). @defaultValue '1GB' */
  indexBuildMemory?: string;
  /** `status()` counts memories exactly up to this many, and reports PostgreSQL's estimate past it. @defaultValue 100000 */
  exactCountLimit?: number;
  /** How far an iterative HNSW scan may go to find `k` rows that pass the filter. @defaultValue 20000 */
  maxScanTuples?: number;
  /** Stored for records that do not name their embedding model. */
  embeddingModel?: string;
  /** Folder of the SQL migrations. @defaultValue the repository's `infra/migrations` */
  migrationsDir?: string;
  /** Connections in a pool the store creates. @defaultValue 10 */
  poolSize?: number;
  /** How long to wait for a connection before failing with `backend_unavailable`. @defaultValue 5000 */
  connectionTimeoutMs?: number;
}

/** How a search was (or would be) run: exact scan of the scope, or the HNSW index. */
export type SearchMode = 'exact' | 'hnsw';

/**
 * How large a search's scope is: counted up to just past `exactLimit`, or (`counted` false) the
 * entries of the user's own graph when the search is scoped by the user alone.
 */
export interface ScopeSize {
  scopeRows: number;
  ownGraph: boolean;
  counted: boolean;
  /** The largest scope this search scans exactly (`exactScanThreshold`, or past it `sparseExactScan`). */
  exactLimit: number;
}

/**
 * When a scope past `exactScanThreshold` is still scanned exactly: when no graph of the user's own
 * serves it (the user has none yet, or was left out by `TenantIndexPolicy.maxGraphs`) and it is a
 * small share of the table. The shared graph then throws away most of its candidates: the
 * sparser the filter, the longer the scan and the lower the recall, while an exact scan's cost
 * grows with the scope alone.
 */
export interface SparseExactScan {
  /** Scopes of at most this many memories... */
  maxMemories: number;
  /** ...and at most this share of the table (of PostgreSQL's estimate of its rows, `reltuples`). */
  maxShare: number;
}

/**
 * At 1M memories, users of 4,000, 6,000 and 10,000 memories with no graph of their own got p99 72.3,
 * 66.4 and 62.5 ms at recall 0.897-0.941 from the shared graph, and p99 6.7, 11.3 and 16.6 ms at
 * recall 1 from an exact scan (in a slower run of the machine, 94.1, 80.0, 76.8 against 15.6, 19.3,
 * 29.3); at 20,000 (2%) 53.1 ms (recall 0.961) and 47.8 ms, at 40,000 39.5 and 113 ms
 * (BENCHMARKS.md, section 4, users by share). Counting a user's scope further costs their
 * first search past the limit about 1.5 ms there (15,001 index entries instead of 2,501;
 * BENCHMARKS.md, tuning); the store then counts them only to the threshold for ten minutes.
 */
export const DEFAULT_SPARSE_EXACT_SCAN: SparseExactScan = { maxMemories: 15_000, maxShare: 0.02 };

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DEDUP_CONSTRAINT = 'memories_dedup_key';
/**
 * The HNSW index as `infra/migrations/0002_halfvec_hnsw.sql` creates it, for rebuilding it after a
 * bulk load (`buildVectorIndex`) and for benchmarks; a test checks that both give the same definition.
 */
export const PGVECTOR_HNSW_INDEX = {
  name: 'memories_embedding_hnsw_idx',
  method: 'hnsw ((embedding::halfvec(384)) halfvec_cosine_ops) WITH (m = 16, ef_construction = 64)',
} as const;
const HNSW_INDEX = PGVECTOR_HNSW_INDEX.name;
/** Names of users' own graphs start with this (`tenantIndexName`). */
export const TENANT_INDEX_PREFIX = 'memories_hnsw_u_';

/**
 * The name of the HNSW graph of one user's memories: a partial index (`WHERE user_id = …`) built by
 * `maintainTenantIndexes`. A digest, since user ids are free text and index names are 63 bytes at most.
 */
export function tenantIndexName(userId: string): string {
  return TENANT_INDEX_PREFIX + createHash('md5').update(userId, 'utf8').digest('hex').slice(0, 24);
}

/**
 * When a user gets a graph of their own. A search scoped to one user in the shared graph throws away
 * the other users' candidates; when the user holds a small share of a large table, that costs both
 * time and recall, the more so the smaller the share (BENCHMARKS.md, section 4, users by share: at
 * 1M memories, p99 61 ms and recall 0.937 for a user with 1% of them). The user's own graph has
 * neither cost, and the user's writes then go into two graphs.
 */
export interface TenantIndexPolicy {
  /** A user with at least this many memories gets a graph. */
  minMemories: number;
  /**
   * ...and holds at most this share of all memories: past it, the shared graph filters out little,
   * and a second graph of most of the table would double the write cost for nothing. @defaultValue 0.5
   */
  maxShare?: number;
  /**
   * Graphs on the table at most. Each is a partial index, and PostgreSQL opens every index of the
   * table for each statement on it: with 1,000 graphs on one table, searches took 3-7× and single
   * writes 1.3-3.1× their time with one; with 100, 1.1-1.6× and 0.8-1.8× (six runs; BENCHMARKS.md,
   * section 4, more graphs on one table). Past it, the largest users that qualify get the graphs,
   * counting a user who holds one twice, so that users of about one size do not trade graphs from
   * run to run: a user left out gets one when another is dropped, or once they hold twice the
   * memories of the smallest holder. Lowered, it drops the smallest holders' graphs at the next
   * run. @defaultValue 100
   */
  maxGraphs?: number;
}

/**
 * A search whose scope holds at most this many memories scans them exactly (`exactScanThreshold`).
 * At 1M memories, through the search service with the query embedded, an exact scan of 2,000
 * memories took p99 15.2-18.6 ms over five runs and one of 4,000 18.4-21.8 ms over three (5,000 was
 * the limit then); in a graph of their own, users of 4,000 to 100,000 memories took 9.6-17.0 ms
 * over two (BENCHMARKS.md, section 4, users by share).
 */
export const DEFAULT_EXACT_SCAN_THRESHOLD = 2500;

/**
 * The worker's defaults (`TENANT_INDEX_MIN_MEMORIES`): every user too large for an exact scan gets a
 * graph, unless they hold most of the table. At 1M memories, users with 0.4-4% of them searched the
 * shared graph at p99 40-94 ms and recall 0.892-0.962, and their own graphs at p99 3.2-7.3 ms and
 * recall ≥ 0.987 (two runs), for 1.2-1.8× the PostgreSQL CPU of each of their writes (BENCHMARKS.md,
 * section 4).
 */
export const DEFAULT_TENANT_INDEX_POLICY = {
  minMemories: DEFAULT_EXACT_SCAN_THRESHOLD,
  maxShare: 0.5,
  maxGraphs: 100,
} as const;

export interface TenantIndexReport {
  /** Graphs built by this run. */
  built: { user_id: string; memories: number; ms: number }[];
  /** Graphs dropped: their user fell under half the thresholds, or left, or a build was interrupted. */
  dropped: number;
  /** Valid graphs left as they were. */
  kept: number;
  /** Users the policy would give a graph, left without one because the table holds `maxGraphs`. */
  capped: number;
  /** Set when another process was maintaining the graphs of this schema; nothing was done. */
  busy?: true;
}
const UPSERT_ATTEMPTS = 3;
/** Past this many `largeGraphs` (or `largeScopes`) hints, the store forgets them all and learns them again. */
const LARGE_GRAPH_HINTS = 10_000;
/** How long a user's scope, counted past the sparse limit, is taken to still be past it (`largeScopes`). */
const LARGE_SCOPE_TTL_MS = 10 * 60_000;

/** The `hnsw.*` settings of one graph search (`hnswScan`). */
interface HnswScan {
  efSearch: number;
  /** `hnsw.iterative_scan` relaxed_order, or off. */
  iterative: boolean;
}

const scanKey = (scan: HnswScan) => `${scan.efSearch}/${scan.iterative}`;

/**
 * Pooled connections that carry a search's session settings (`applySearchSettings`), with the
 * `scanKey` of the `hnsw.*` values they hold (undefined: being set, or unknown after a failure).
 * Module-wide, so that stores sharing a pool agree on each connection's state.
 */
const searchSessions = new WeakMap<PoolClient, string | undefined>();

interface MemoryRow {
  id: string;
  user_id: string;
  session_id: string | null;
  session_type: string | null;
  project: string | null;
  content: string;
  content_type: string;
  metadata: Memory['metadata'];
  content_hash: string;
  embedding_model: string;
  created_at: Date;
  updated_at: Date;
}

interface ExistingRow {
  id: string;
  user_id: string;
  session_id: string | null;
  project_id: string | null;
  content_hash: string;
  migration_id: string | null;
}

/** A record ready to write: ids lower-cased, project resolved to its id. */
interface PreparedRecord {
  record: MemoryRecord;
  id: string;
  projectId: string | null;
}

function toMemory(row: MemoryRow): Memory {
  return {
    id: row.id,
    user_id: row.user_id,
    session_id: row.session_id,
    session_type: row.session_type,
    project: row.project,
    content: row.content,
    content_type: row.content_type,
    metadata: row.metadata,
    content_hash: row.content_hash,
    embedding_model: row.embedding_model,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  };
}

function toHit(row: MemoryRow & { distance: number }): SearchHit {
  return { ...toMemory(row), similarity: 1 - row.distance };
}

function dedupKey(userId: string, sessionId: string | null, projectId: string | null, hash: string): string {
  return [userId, sessionId ?? '', projectId ?? '0', hash].join('\u0000');
}

/** A statement PostgreSQL parses and plans once per connection: a named prepared statement. */
interface Prepared {
  name: string;
  text: string;
}

/**
 * Names a statement whose text never changes for a store, so that each pooled connection parses
 * and plans it once rather than on every call: a single-memory upsert takes 0.74× the time at p50
 * (3.1 against 4.2 ms), a `get` 0.63× (BENCHMARKS.md, tuning); a write of 64 gains nothing. The name is
 * a digest of the text, which holds the schema: stores of other schemas that share a pool never
 * reuse a name for another statement. Statements whose text follows the request (filters) stay
 * unnamed: they would pile up on the connections, and a plan made once for any value of a filter
 * could be the wrong one for the next.
 */
function prepared(text: string): Prepared {
  return { name: `ms_${createHash('sha1').update(text).digest('hex').slice(0, 24)}`, text };
}

function positiveInt(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1)
    throw new ValidationError(`${name} must be a positive integer`, { [name]: value });
  return value;
}

/** `sparseExactScan` off: no scope past the threshold is scanned exactly. */
const NO_SPARSE_EXACT_SCAN: SparseExactScan = { maxMemories: 0, maxShare: 0 };

function sparseExactScanOf(option: SparseExactScan | false | undefined): SparseExactScan {
  if (option === false) return NO_SPARSE_EXACT_SCAN;
  const { maxMemories, maxShare } = option ?? DEFAULT_SPARSE_EXACT_SCAN;
  if (!Number.isInteger(maxMemories) || maxMemories < 0)
    throw new ValidationError('sparseExactScan.maxMemories must be a non-negative integer', { maxMemories });
  if (!(maxShare >= 0 && maxShare <= 1))
    throw new ValidationError('sparseExactScan.maxShare is a share from 0 to 1', { maxShare });
  return { maxMemories, maxShare };
}

/**
 * `MemoryStore` on PostgreSQL + pgvector. Tables come from the SQL migrations in `infra/migrations`
 * (applied by `initialize`). Writes are batched into one statement per batch; search runs an exact
 * scan over small scopes and an iterative HNSW scan (relaxed order, re-sorted by exact distance)
 * over large ones; filters become parameterised SQL.
 */
export class PgvectorMemoryStore implements MemoryStore {
  readonly backend = 'postgres' as const;
  private readonly pool: Pool;
  private readonly ownsPool: boolean;
  private readonly log: Logger;
  private readonly schema: string;
  private readonly efSearch: number;
  private readonly tenantEfSearch: number;
  private readonly exactScanThreshold: number;
  /** `sparseExactScan`, off as `NO_SPARSE_EXACT_SCAN`. */
  private readonly sparseExactScan: SparseExactScan;
  private readonly maxScanTuples: number;
  private readonly overfetch: number;
  private readonly indexBuildMemory: string;
  private vectorOid: Promise<number> | undefined;
  /** Graphs of users' own that held more than `exactScanThreshold` rows at their user's last search (`search`). */
  private readonly largeGraphs = new Set<string>();
  /**
   * Users with no graph of their own whose scope was counted past the sparse limit
   * (`sparseExactScan`), until when their searches count only to the threshold: counting to 15,001
   * instead of 2,501 took 1.5 ms per search at 1M (BENCHMARKS.md, tuning), on every search of a
   * single-user install that large. One that shrinks meanwhile searches the shared graph, as it
   * would have before `sparseExactScan`, until the hint expires.
   */
  private readonly largeScopes = new Map<string, number>();
  private readonly exactCountLimit: number;
  private readonly t: { memories: string; projects: string; sessions: string; users: string };
  /** The statements of writes and of reads by id (`prepared`). */
  private readonly sql: ReturnType<PgvectorMemoryStore['statements']>;

  constructor(
    private readonly options: PgvectorStoreOptions,
    private readonly logger: Logger,
  ) {
    this.log = logger.child({ module: 'pgvector-store' });
    this.schema = options.schema ?? 'public';
    const s = quoteIdent(this.schema);
    this.t = {
      memories: `${s}.memories`,
      projects: `${s}.projects`,
      sessions: `${s}.sessions`,
      users: `${s}.users`,
    };
    this.sql = this.statements();
    this.efSearch = positiveInt(options.efSearch ?? 400, 'efSearch');
    this.tenantEfSearch = positiveInt(options.tenantEfSearch ?? 200, 'tenantEfSearch');
    this.overfetch = positiveInt(options.overfetch ?? 2, 'overfetch');
    this.indexBuildMemory = options.indexBuildMemory ?? '1GB';
    this.exactCountLimit = positiveInt(options.exactCountLimit ?? 100_000, 'exactCountLimit');
    this.exactScanThreshold = Math.max(
      0,
      // At most what a SQL integer holds, one to spare for counting just past it.
      Math.min(Math.floor(options.exactScanThreshold ?? DEFAULT_EXACT_SCAN_THRESHOLD), 2 ** 31 - 2),
    );
    this.sparseExactScan = sparseExactScanOf(options.sparseExactScan);
    this.maxScanTuples = positiveInt(options.maxScanTuples ?? 20_000, 'maxScanTuples');
    if (options.pool) {
      this.pool = options.pool;
      this.ownsPool = false;
    } else if (options.connectionString) {
      this.pool = new Pool({
        connectionString: options.connectionString,
        max: options.poolSize ?? 10,
        connectionTimeoutMillis: options.connectionTimeoutMs ?? 5000,
        idleTimeoutMillis: 30_000,
        application_name: 'memory-service',
      });
      this.ownsPool = true;
      // An idle client that loses its connection emits here; without a listener the process would exit.
      this.pool.on('error', (error) => this.log.warn({ err: error }, 'idle PostgreSQL connection failed'));
    } else {
      throw new ValidationError(
        'PgvectorMemoryStore needs a pool or a connectionString',
        undefined,
        'invalid_config',
      );
    }
  }

  async initialize(): Promise<void> {
    try {
      const applied = await runMigrations(
        this.pool,
        { schema: this.schema, migrationsDir: this.options.migrationsDir },
        this.logger,
      );
      this.log.info({ schema: this.schema, applied }, 'pgvector store initialized');
      const version = await this.pool.query<{ v: string | null }>(
        "SELECT (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS v",
      );
      for (const warning of pgvectorWarnings(version.rows[0]?.v ?? '')) this.log.warn(warning);
    } catch (error) {
      throw toStoreError(error, 'initialize');
    }
  }

  async upsert(records: MemoryRecord[]): Promise<UpsertResult[]> {
    if (records.length === 0) return [];
    for (const r of records) {
      if (!UUID.test(r.id)) throw new ValidationError('memory ids are UUIDs', { id: r.id }, 'invalid_id');
      if (typeof r.user_id !== 'string' || r.user_id.length === 0) {
        throw new ValidationError('a memory needs a user_id', { id: r.id });
      }
      for (const key of Object.keys(r.metadata ?? {})) {
        if (!METADATA_KEY_PATTERN.test(key) || RESERVED_METADATA_KEYS.has(key)) {
          throw new ValidationError(`metadata key "${key}" is reserved or not allowed`, { id: r.id, key });
        }
      }
    }
    for (const r of records) checkVector(r.embedding);
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.transaction('upsert', async (client) => {
          const results: UpsertResult[] = [];
          for (const part of chunks(records, MemoryLimits.batchMaxMemories))
            results.push(...(await this.writeBatch(client, part)));
          return results;
        });
      } catch (error) {
        // Another writer stored the same content between our lookup and insert: look again.
        const raced =
          error instanceof ConflictError &&
          (error.details as { constraint?: string })?.constraint === DEDUP_CONSTRAINT;
        if (!raced || attempt >= UPSERT_ATTEMPTS) throw error;
        this.log.debug({ attempt }, 'dedup race on upsert, retrying');
      }
    }
  }

  /** One batch inside the upsert transaction: scope rows, one lookup, one INSERT for all memories. */
  private async writeBatch(client: PoolClient, records: MemoryRecord[]): Promise<UpsertResult[]> {
    const projectIds = await this.ensureScopes(client, records);
    const prepared: PreparedRecord[] = records.map((record) => ({
      record,
      id: record.id.toLowerCase(),
      projectId: record.project ? (projectIds.get(`${record.user_id}\u0000${record.project}`) ?? null) : null,
    }));

    const existing = await this.lookupExisting(client, prepared);
    const byId = new Map(existing.map((row) => [row.id, row]));
    // Who holds each content key, as far as this batch can tell. Rows being updated keep their old key
    // too: conservative (never a unique violation), at worst reporting a duplicate of a moved row.
    const keyOwner = new Map<string, string>();
    for (const row of existing)
      keyOwner.set(dedupKey(row.user_id, row.session_id, row.project_id, row.content_hash), row.id);

    // The same id twice in one batch: the last occurrence is written, earlier ones share its result.
    const lastIndex = new Map(prepared.map((p, i) => [p.id, i]));
    const outcome = new Map<string, { id: string; status: UpsertResult['status'] }>();
    const toWrite: PreparedRecord[] = [];
    prepared.forEach((p, i) => {
      if (lastIndex.get(p.id) !== i) return;
      const current = byId.get(p.id);
      if (current && current.user_id !== p.record.user_id) {
        throw new ConflictError(
          'a memory with this id belongs to another user',
          { id: p.record.id },
          'id_conflict',
        );
      }
      const key = dedupKey(p.record.user_id, p.record.session_id ?? null, p.projectId, p.record.content_hash);
      const owner = keyOwner.get(key);
      if (owner !== undefined && owner !== p.id) {
        outcome.set(p.id, { id: owner, status: 'duplicate' });
        return;
      }
      keyOwner.set(key, p.id);
      toWrite.push(p);
    });

    await this.adoptMigrated(client, prepared, outcome, byId);
    if (toWrite.length > 0) {
      const written = await this.insertMemories(client, toWrite);
      for (const p of toWrite) {
        const inserted = written.get(p.id);
        if (inserted === undefined) {
          throw new ConflictError(
            'a memory with this id belongs to another user',
            { id: p.record.id },
            'id_conflict',
          );
        }
        outcome.set(p.id, { id: p.record.id, status: inserted ? 'created' : 'updated' });
      }
    }
    return prepared.map((p) => {
      const result = outcome.get(p.id)!;
      return {
        requested_id: p.record.id,
        id: result.status === 'duplicate' ? result.id : p.record.id,
        status: result.status,
      };
    });
  }

  /**
   * A memory stored outside a migration that turns out a duplicate of a migrated row has been
   * confirmed by its writer: the row stops belonging to the migration, so that rolling the migration
   * back keeps it (as it keeps rows updated by id, whose migration id the upsert clears).
   */
  private async adoptMigrated(
    client: PoolClient,
    prepared: PreparedRecord[],
    outcome: Map<string, { id: string; status: UpsertResult['status'] }>,
    existing: Map<string, ExistingRow>,
  ): Promise<void> {
    const adopted = new Set<string>();
    for (const p of prepared) {
      const result = outcome.get(p.id);
      if (result?.status !== 'duplicate' || p.record.migration_id) continue;
      if (existing.get(result.id)?.migration_id) adopted.add(result.id);
    }
    if (adopted.size === 0) return;
    await client.query({ ...this.sql.adoptMigrated, values: [[...adopted]] });
  }

  /** Creates the users, projects and sessions a batch names; returns project ids by `user\0name`. */
  private async ensureScopes(client: PoolClient, records: MemoryRecord[]): Promise<Map<string, string>> {
    const users = [...new Set(records.map((r) => r.user_id))].sort();
    await client.query({ ...this.sql.insertUsers, values: [users] });

    const projectIds = new Map<string, string>();
    const withProject = records.filter((r) => r.project);
    if (withProject.length > 0) {
      const pairs = [...new Map(withProject.map((r) => [`${r.user_id}\u0000${r.project}`, r])).values()];
      const params = [pairs.map((r) => r.user_id), pairs.map((r) => r.project)];
      await client.query({ ...this.sql.insertProjects, values: params });
      const rows = await client.query<{ id: string; user_id: string; name: string }>({
        ...this.sql.projectIds,
        values: params,
      });
      for (const row of rows.rows) projectIds.set(`${row.user_id}\u0000${row.name}`, row.id);
    }

    const withSession = records.filter((r) => r.session_id);
    if (withSession.length > 0) {
      await client.query({
        ...this.sql.upsertSessions,
        values: [
          withSession.map((r) => r.user_id),
          withSession.map((r) => r.session_id),
          withSession.map((r) =>
            r.project ? (projectIds.get(`${r.user_id}\u0000${r.project}`) ?? null) : null,
          ),
          withSession.map((r) => r.session_type ?? null),
        ],
      });
    }
    return projectIds;
  }

  /** Memories that share an id or a content key (user + session + project + hash) with the batch. */
  private async lookupExisting(client: PoolClient, batch: PreparedRecord[]): Promise<ExistingRow[]> {
    const result = await client.query<ExistingRow>({
      ...this.sql.lookupExisting,
      values: [
        batch.map((p) => p.id),
        batch.map((p) => p.record.user_id),
        batch.map((p) => p.record.session_id ?? ''),
        batch.map((p) => p.projectId ?? '0'),
        batch.map((p) => p.record.content_hash),
      ],
    });
    return result.rows;
  }

  /** One INSERT for the whole batch; an existing id (same user) is updated. Returns id → inserted. */
  private async insertMemories(client: PoolClient, batch: PreparedRecord[]): Promise<Map<string, boolean>> {
    const col = <T>(pick: (p: PreparedRecord) => T): T[] => batch.map(pick);
    const vectors = encodeVectorArray(
      batch.map((p) => p.record.embedding),
      await this.vectorTypeOid(client),
    );
    const result = await client.query<{ id: string; inserted: boolean }>({
      ...this.sql.insertMemories,
      values: [
        col((p) => p.id),
        col((p) => p.record.user_id),
        col((p) => p.record.session_id ?? null),
        col((p) => p.record.session_type ?? null),
        col((p) => p.projectId),
        col((p) => p.record.content),
        col((p) => p.record.content_type),
        col((p) => JSON.stringify(p.record.metadata ?? {})),
        col((p) => p.record.content_hash),
        vectors,
        col((p) => p.record.embedding_model || this.options.embeddingModel || 'unknown'),
        col((p) => p.record.migration_id ?? null),
        col((p) => p.record.created_at || null),
        col((p) => p.record.updated_at || null),
      ],
    });
    return new Map(result.rows.map((row) => [row.id, row.inserted]));
  }

  /** The `vector` type's OID in this database, asked once (binary vector parameters name it). */
  private vectorTypeOid(client: PoolClient): Promise<number> {
    this.vectorOid ??= client
      .query<{ oid: number }>(`SELECT 'vector'::regtype::oid::int AS oid`)
      .then((r) => r.rows[0]!.oid);
    this.vectorOid.catch(() => (this.vectorOid = undefined));
    return this.vectorOid;
  }

  async search(vector: Float32Array | number[], k: number, filter: MemoryFilter): Promise<SearchHit[]> {
    const plan = this.searchPlan(vector, k, filter);
    // No transaction: each statement reads its own snapshot anyway (READ COMMITTED), and a search's
    // settings live on the connection (`applySearchSettings`).
    return this.withClient(
      'search',
      async (client) => {
        const hinted = plan.userOnly && this.largeGraphs.has(plan.tenantIndex);
        if (hinted) {
          const hits = await this.searchLargeGraph(client, plan);
          if (hits) return hits;
          this.largeGraphs.delete(plan.tenantIndex);
        }
        const { scopeRows, ownGraph, counted, exactLimit } = await this.countScope(client, plan);
        if (scopeRows <= exactLimit) return this.runSearch(client, plan, 'exact');
        // Not counted: scoped by the user alone, whose own graph is past the threshold.
        if (!counted) this.rememberLargeGraph(plan.tenantIndex);
        const hits = await this.runSearch(client, plan, 'hnsw', ownGraph);
        // An iterative scan stops at maxScanTuples, a very selective filter may leave it short of k;
        // a scan that is not iterative stops at ef_search, which rows deleted since VACUUM may thin.
        if (hits.length < Math.min(plan.k, scopeRows)) {
          this.log.debug({ found: hits.length, k: plan.k }, 'hnsw scan came back short, scanning exactly');
          return this.runSearch(client, plan, 'exact');
        }
        return hits;
      },
      { search: true },
    );
  }

  /**
   * A search by the user alone, of a user whose own graph held more rows than the exact-scan
   * threshold at their last search (`largeGraphs`): the graph is searched straight away, by one
   * statement that also says whether it still is such a graph, instead of asking first
   * (`countScope`): that statement took 1.6 ms of an 11 ms search at p50 at 1M (BENCHMARKS.md, tuning).
   * Undefined when it no longer is, or when the scan came back short: `search` then goes the long way.
   */
  private async searchLargeGraph(
    client: PoolClient,
    plan: ReturnType<PgvectorMemoryStore['searchPlan']>,
  ): Promise<SearchHit[] | undefined> {
    await this.applySearchSettings(client, this.hnswScan(plan.k, true, true));
    const { text, values } = this.searchSql(plan, 'hnsw', {
      index: plan.tenantIndex,
      minEntries: this.exactScanThreshold + 1,
    });
    const result = await client.query<MemoryRow & { distance: number; large_graph: boolean | null }>(
      text,
      values,
    );
    if (result.rows.length < plan.k || !result.rows[0]!.large_graph) return undefined;
    return result.rows.map(toHit);
  }

  private rememberLargeGraph(index: string): void {
    if (this.largeGraphs.size >= LARGE_GRAPH_HINTS) this.largeGraphs.clear();
    this.largeGraphs.add(index);
  }

  /**
   * The mode and PostgreSQL plan `search` would use for these arguments (for diagnostics and tests).
   */
  async explainSearch(
    vector: Float32Array | number[],
    k: number,
    filter: MemoryFilter,
  ): Promise<{ mode: SearchMode; plan: string; efSearch?: number; iterative?: boolean; scope: ScopeSize }> {
    const plan = this.searchPlan(vector, k, filter);
    return this.withClient(
      'explain search',
      async (client) => {
        const scope = await this.countScope(client, plan);
        const mode: SearchMode = scope.scopeRows <= scope.exactLimit ? 'exact' : 'hnsw';
        const scan = mode === 'hnsw' ? this.hnswScan(plan.k, scope.ownGraph, plan.userOnly) : undefined;
        await this.applySearchSettings(client, scan);
        const { text, values } = this.searchSql(plan, mode);
        const result = await client.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${text}`, values);
        return {
          mode,
          plan: result.rows.map((r) => r['QUERY PLAN']).join('\n'),
          efSearch: scan?.efSearch,
          iterative: scan?.iterative,
          scope,
        };
      },
      { search: true },
    );
  }

  private searchPlan(vector: Float32Array | number[], k: number, filter: MemoryFilter) {
    if (!Number.isInteger(k) || k < 1 || k > MemoryLimits.searchMaxResults) {
      throw new ValidationError(`k is an integer from 1 to ${MemoryLimits.searchMaxResults}`, { k });
    }
    checkVector(vector);
    const params = new SqlParams();
    const filterSql = filterToSql(filter, params, { alias: 'm', projectsTable: this.t.projects });
    return {
      k,
      vector: encodeVector(vector),
      filterSql,
      filterValues: params.values,
      tenantIndex: this.qualified(tenantIndexName(filter.user_id)),
      /** Scoped by the user alone: a graph of the user's own holds exactly the scope. */
      userOnly: filter.where === undefined,
    };
  }

  /**
   * Memories in the filtered scope, counted up to just past the largest scope the search would
   * scan exactly, whether the user has a graph of their own (which the planner then picks: its
   * predicate matches the filter), and that limit: `exactScanThreshold`, or for a user without a
   * graph of their own up to `sparseExactScan`'s share of the table (never lower).
   *
   * Scoped by the user alone, a user whose own graph holds more rows than the threshold (PostgreSQL's
   * count of its entries, `reltuples`) is not counted: the graph is the right tool anyway. Counting up
   * to a limit reads that many index entries, and the table's page for each one written since the
   * last VACUUM: at 200k memories, counting to 5,001 was 9.5 ms of a 14.6 ms search (p50) on a table
   * just loaded, and 3 ms of its p99 after VACUUM (BENCHMARKS.md, tuning). Counting past the
   * threshold happens only on tables large enough for the sparse limit to pass it (125,000 memories
   * with the defaults), and only for scopes with no graph of the user's own.
   */
  private async countScope(
    client: PoolClient,
    plan: ReturnType<PgvectorMemoryStore['searchPlan']>,
  ): Promise<ScopeSize> {
    const params = new SqlParams([...plan.filterValues]);
    const hinted = plan.userOnly && (this.largeScopes.get(plan.tenantIndex) ?? 0) > Date.now();
    const rule = hinted ? NO_SPARSE_EXACT_SCAN : this.sparseExactScan;
    const threshold = params.add(this.exactScanThreshold, 'int');
    const sparse = `least(${params.add(rule.maxMemories, 'int')},
                          floor(${params.add(rule.maxShare, 'float8')} * t.reltuples)::int)`;
    // The count is a subquery PostgreSQL runs only if CASE needs it; a table never analysed has
    // reltuples -1, and then only the threshold applies.
    const result = await client.query<{ n: number; own: boolean; counted: boolean; exact_limit: number }>(
      `SELECT CASE WHEN g.skip THEN g.entries
                   ELSE (SELECT count(*)::int FROM (SELECT 1 FROM ${this.t.memories} m WHERE ${plan.filterSql}
                         LIMIT g.exact_limit + 1) s) END AS n,
              g.own, NOT g.skip AS counted, g.exact_limit
         FROM (SELECT own, entries, own AND ${params.add(plan.userOnly, 'boolean')} AND entries > ${threshold} AS skip,
                      CASE WHEN own THEN ${threshold} ELSE greatest(${threshold}, ${sparse}) END AS exact_limit
                 FROM (SELECT coalesce(i.indisvalid, false) AS own, coalesce(c.reltuples, 0)::int AS entries
                         FROM (SELECT to_regclass(${params.add(plan.tenantIndex)}) AS oid) r
                         LEFT JOIN pg_index i ON i.indexrelid = r.oid
                         LEFT JOIN pg_class c ON c.oid = r.oid) e,
                      (SELECT coalesce(max(reltuples), -1) AS reltuples FROM pg_class
                        WHERE oid = to_regclass(${params.add(this.t.memories)})) t) g`,
      params.values,
    );
    const row = result.rows[0];
    const scope = {
      scopeRows: row?.n ?? 0,
      ownGraph: row?.own ?? false,
      counted: row?.counted ?? true,
      exactLimit: row?.exact_limit ?? this.exactScanThreshold,
    };
    if (plan.userOnly && scope.exactLimit > this.exactScanThreshold && scope.scopeRows > scope.exactLimit) {
      if (this.largeScopes.size >= LARGE_GRAPH_HINTS) this.largeScopes.clear();
      this.largeScopes.set(plan.tenantIndex, Date.now() + LARGE_SCOPE_TTL_MS);
    }
    return scope;
  }

  /**
   * Settings of a search. The scope was counted and is large, so the index is the right tool: plans
   * that sort the whole scope are ruled out rather than left to cost estimates (stale right after
   * bulk loads), so that ef_search always means what it says. That penalty inflates the plan's cost
   * past JIT's threshold, and compiling costs more than the query. An exact scan (no `scan`) sorts
   * in every plan it has, so the penalty does not change its choice.
   *
   * They are set on the connection's session and left there for its next search, which skips this
   * round trip unless it needs other `hnsw.*` values. Set locally, they needed a transaction: BEGIN,
   * settings and COMMIT were 3 of a search's 5 round trips (BENCHMARKS.md, tuning). Every other
   * operation resets `enable_sort` and `jit` before it runs (`withClient`); `hnsw.*` only concern
   * searches. Behind a pooler in transaction mode (PgBouncer), session settings would not stick:
   * the store keeps its own pool, so connect it to PostgreSQL or to a pooler in session mode.
   */
  private async applySearchSettings(client: PoolClient, scan?: HnswScan): Promise<void> {
    const held = searchSessions.get(client);
    if (held !== undefined && (scan === undefined || held === scanKey(scan))) return;
    scan ??= { efSearch: this.efSearch, iterative: true };
    searchSessions.set(client, undefined);
    await client.query(
      `SELECT set_config('hnsw.ef_search', $1, false),
              set_config('hnsw.iterative_scan', $2, false),
              set_config('hnsw.max_scan_tuples', $3, false),
              set_config('enable_sort', 'off', false),
              set_config('jit', 'off', false)`,
      [String(scan.efSearch), scan.iterative ? 'relaxed_order' : 'off', String(this.maxScanTuples)],
    );
    searchSessions.set(client, scanKey(scan));
  }

  /**
   * The graph search for a top-`k` search in the shared graph or in the user's own. In the user's
   * own graph with no filter but the user, no candidate is filtered out, so the scan never needs to
   * go past ef_search: an iterative scan only adds its bookkeeping, 1.4 ms of an 8.6 ms search at
   * 1M (p50; BENCHMARKS.md, tuning). A scan that still comes back short (rows deleted since the last
   * VACUUM) is done again exactly (`search`).
   */
  private hnswScan(k: number, ownGraph: boolean, userOnly: boolean): HnswScan {
    const ef = ownGraph ? this.tenantEfSearch : this.efSearch;
    return { efSearch: Math.min(1000, Math.max(ef, k * this.overfetch)), iterative: !(ownGraph && userOnly) };
  }

  /**
   * The statement of a search. With `graphCheck`, each row also says (`large_graph`) whether that
   * index is a valid graph of at least `minEntries` rows.
   */
  private searchSql(
    plan: ReturnType<PgvectorMemoryStore['searchPlan']>,
    mode: SearchMode,
    graphCheck?: { index: string; minEntries: number },
  ): { text: string; values: unknown[] } {
    const params = new SqlParams([...plan.filterValues]);
    const query = params.add(plan.vector);
    const vec = `${query}::vector`;
    const k = params.add(plan.k, 'int');
    // Each mode's candidates, ids and exact distances, nearest first; then only those are read
    // whole, joined to their project, and the k nearest kept (`+ 0` keeps the planner from
    // trusting the CTE's order).
    const candidates =
      mode === 'exact'
        ? // Ordering by an expression the HNSW index cannot serve (`+ 0`) forces an exact scan of
          // the (small) scope, each distance computed once. Ranking ids alone, before reading rows
          // whole and joining them: at 1M memories, a scope of 4,000 took p50 6.15 / p99 9.29 ms
          // when every row of the scope was joined and ranked whole, 4.99 / 7.45 this way
          // (BENCHMARKS.md, tuning).
          `SELECT m.id, (m.embedding <=> ${vec}) + 0 AS distance
           FROM ${this.t.memories} m
           WHERE ${plan.filterSql}
           ORDER BY distance, m.id
           LIMIT ${k}`
        : // The index orders by half-precision distance and relaxed_order may return rows slightly
          // out of order: take k × overfetch candidates, to be re-ranked by exact distance.
          `SELECT m.id, m.embedding <=> ${vec} AS distance
           FROM ${this.t.memories} m
           WHERE ${plan.filterSql}
           ORDER BY m.embedding::halfvec(384) <=> ${query}::halfvec(384)
           LIMIT ${params.add(plan.k * this.overfetch, 'int')}`;
    const check = graphCheck
      ? `, (SELECT i.indisvalid AND c.reltuples >= ${params.add(graphCheck.minEntries, 'int')}
            FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
            WHERE i.indexrelid = to_regclass(${params.add(graphCheck.index)})) AS large_graph`
      : '';
    return {
      text: `WITH nearest AS MATERIALIZED (${candidates})
             SELECT ${this.columns('m', 'p')}, nearest.distance${check}
             FROM nearest JOIN ${this.t.memories} m ON m.id = nearest.id
             LEFT JOIN ${this.t.projects} p ON p.id = m.project_id
             ORDER BY nearest.distance + 0, m.id
             LIMIT ${k}`,
      values: params.values,
    };
  }

  private async runSearch(
    client: PoolClient,
    plan: ReturnType<PgvectorMemoryStore['searchPlan']>,
    mode: SearchMode,
    ownGraph = false,
  ): Promise<SearchHit[]> {
    const scan = mode === 'hnsw' ? this.hnswScan(plan.k, ownGraph, plan.userOnly) : undefined;
    await this.applySearchSettings(client, scan);
    const { text, values } = this.searchSql(plan, mode);
    const result = await client.query<MemoryRow & { distance: number }>(text, values);
    this.log.debug({ mode, k: plan.k, found: result.rowCount }, 'search');
    return result.rows.map(toHit);
  }

  async get(userId: string, id: string): Promise<Memory | null> {
    if (!UUID.test(id)) return null;
    const result = await this.query<MemoryRow>('get', this.sql.get, [userId, id]);
    return result.rows[0] ? toMemory(result.rows[0]) : null;
  }

  async list(filter: MemoryFilter, page: Page): Promise<ListResult> {
    const limit = page.limit ?? 50;
    const offset = page.offset ?? 0;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
      throw new ValidationError('limit is an integer from 1 to 1000', { limit });
    if (!Number.isInteger(offset) || offset < 0)
      throw new ValidationError('offset is a non-negative integer', { offset });
    const params = new SqlParams();
    const where = filterToSql(filter, params, { alias: 'm', projectsTable: this.t.projects });
    const whereValues = [...params.values];
    const limitParam = params.add(limit, 'int');
    const offsetParam = params.add(offset, 'int');
    return this.transaction(
      'list',
      async (client) => {
        const total = await client.query<{ n: string }>(
          `SELECT count(*) AS n FROM ${this.t.memories} m WHERE ${where}`,
          whereValues,
        );
        const rows = await client.query<MemoryRow>(
          `SELECT ${this.columns('m', 'p')} FROM ${this.t.memories} m LEFT JOIN ${this.t.projects} p ON p.id = m.project_id
           WHERE ${where}
           ORDER BY m.created_at DESC, m.id DESC
           LIMIT ${limitParam} OFFSET ${offsetParam}`,
          params.values,
        );
        return { items: rows.rows.map(toMemory), total: Number(total.rows[0]?.n ?? 0) };
      },
      true,
      'REPEATABLE READ',
    );
  }

  async delete(userId: string, id: string): Promise<boolean> {
    if (!UUID.test(id)) return false;
    const result = await this.query('delete', this.sql.delete, [userId, id]);
    return (result.rowCount ?? 0) > 0;
  }

  async deleteByScope(filter: MemoryFilter, among: readonly string[] = []): Promise<ScopeDeletion> {
    const params = new SqlParams();
    const where = filterToSql(filter, params, { alias: 'm', projectsTable: this.t.projects });
    const asked = params.add(
      among.filter((id) => UUID.test(id)),
      'uuid[]',
    );
    const result = await this.query<{ count: number; among: string[] }>(
      'delete by scope',
      `WITH removed AS (DELETE FROM ${this.t.memories} AS m WHERE ${where} RETURNING m.id)
       SELECT count(*)::int AS count,
              coalesce(array_agg(id::text) FILTER (WHERE id = ANY(${asked})), '{}') AS among
         FROM removed`,
      params.values,
    );
    return result.rows[0]!;
  }

  /** Removes every memory written by one Chroma → PostgreSQL migration (all users); returns how many. */
  async deleteByMigration(migrationId: string): Promise<number> {
    if (!migrationId)
      throw new ValidationError('a migration id is required', undefined, 'invalid_migration_id');
    const result = await this.query(
      'delete by migration',
      `DELETE FROM ${this.t.memories} WHERE migration_id = $1`,
      [migrationId],
    );
    return result.rowCount ?? 0;
  }

  /**
   * Drops the HNSW index before a bulk load: PostgreSQL then builds the graph once, from all rows,
   * several times faster than inserting rows into it one by one (BENCHMARKS.md, migration). Searches
   * stay correct meanwhile (exact scans). Returns whether there was an index to drop.
   */
  async dropVectorIndex(): Promise<boolean> {
    return this.transaction('drop vector index', async (client) => {
      const existed = await this.lockVectorIndex(client);
      // Users' own graphs too: every insert of the load would otherwise go into them one by one.
      // `maintainTenantIndexes` builds them again once the load is done.
      const names = [HNSW_INDEX, ...(await this.tenantIndexes(client)).map((i) => i.name)];
      await client.query(`DROP INDEX IF EXISTS ${names.map((n) => this.qualified(n)).join(', ')}`);
      return existed;
    });
  }

  /**
   * Builds the HNSW index if it is missing (after a bulk load), with `indexBuildMemory` of
   * `maintenance_work_mem` for the build (PostgreSQL's parallel workers share it). Writers wait for
   * the build; readers do not. Returns the build's duration in ms, 0 when the index was there.
   */
  async buildVectorIndex(): Promise<number> {
    return this.transaction('build vector index', async (client) => {
      if (await this.lockVectorIndex(client)) return 0;
      await client.query(`SELECT set_config('maintenance_work_mem', $1, true)`, [this.indexBuildMemory]);
      await client.query(`SET LOCAL statement_timeout = 0`);
      const start = performance.now();
      await client.query(
        `CREATE INDEX ${HNSW_INDEX} ON ${this.t.memories} USING ${PGVECTOR_HNSW_INDEX.method}`,
      );
      const ms = performance.now() - start;
      this.log.info({ ms: Math.round(ms) }, 'hnsw index built');
      return ms;
    });
  }

  /**
   * Gives each user who holds many memories, but a small share of the table, an HNSW graph of their
   * own (a partial index that the planner picks for searches filtered on that user), and drops the
   * graphs that no longer pay: see `TenantIndexPolicy`. A graph is kept until its user falls under
   * half the thresholds (half the memories, or past 1.5 × the share), so that a user near a threshold
   * does not cause a build and a drop on every run. A graph whose build was interrupted (left invalid
   * by `CREATE INDEX CONCURRENTLY`) is dropped and built again.
   *
   * Builds run `CONCURRENTLY`: writes and searches go on meanwhile. One run at a time per schema (an
   * advisory lock); a second caller gets `busy`. An aborted `signal` cancels a build in progress.
   */
  async maintainTenantIndexes(policy: TenantIndexPolicy, signal?: AbortSignal): Promise<TenantIndexReport> {
    const minMemories = positiveInt(policy.minMemories, 'minMemories');
    const maxShare = policy.maxShare ?? DEFAULT_TENANT_INDEX_POLICY.maxShare;
    if (!(maxShare > 0 && maxShare <= 1))
      throw new ValidationError('maxShare is a share from 0 (excluded) to 1', { maxShare });
    const maxGraphs = positiveInt(policy.maxGraphs ?? DEFAULT_TENANT_INDEX_POLICY.maxGraphs, 'maxGraphs');
    const report: TenantIndexReport = { built: [], dropped: 0, kept: 0, capped: 0 };
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw toStoreError(error, 'maintain tenant indexes');
    }
    const lockKey = `${this.schema}.${TENANT_INDEX_PREFIX}`;
    let locked = false;
    try {
      locked = (
        await client.query<{ ok: boolean }>(`SELECT pg_try_advisory_lock(hashtext($1)) AS ok`, [lockKey])
      ).rows[0]!.ok;
      if (!locked) return { ...report, busy: true };
      await this.resetSearchSettings(client);
      // One pass over the table: each user's count, and (summed over all users) the total.
      const users = await client.query<{ user_id: string; n: string; total: string }>(
        `SELECT user_id, n, total FROM (
           SELECT user_id, count(*) AS n, sum(count(*)) OVER () AS total FROM ${this.t.memories} GROUP BY user_id
         ) counts WHERE n >= $1`,
        [Math.ceil(minMemories / 2)],
      );
      const total = Number(users.rows[0]?.total ?? 0);
      const byName = new Map(
        users.rows.map((u) => [tenantIndexName(u.user_id), { userId: u.user_id, n: Number(u.n) }]),
      );
      // Graphs whose user left, fell under half the thresholds, or whose build was interrupted go.
      const holders = new Map<string, { userId: string; n: number }>();
      for (const index of await this.tenantIndexes(client)) {
        const user = byName.get(index.name);
        if (index.valid && user !== undefined && user.n <= Math.min(1, maxShare * 1.5) * total) {
          holders.set(index.name, user);
          continue;
        }
        await this.dropTenantIndex(client, index.name);
        report.dropped += 1;
        this.log.info({ index: index.name, valid: index.valid }, 'tenant hnsw index dropped');
      }
      const qualifies = (u: { n: number }) => u.n >= minMemories && u.n <= maxShare * total;
      // The largest users get the table's `maxGraphs` places. A graph ranks its user as if they held
      // twice their memories, so that users of about one size do not take each other's graph from
      // run to run: a user must outgrow a holder twice over to take its place.
      const placed = [
        ...[...holders].map(([name, u]) => ({ name, user: u, rank: 2 * u.n, holds: true })),
        ...[...byName]
          .filter(([name, u]) => !holders.has(name) && qualifies(u))
          .map(([name, u]) => ({ name, user: u, rank: u.n, holds: false })),
      ].sort((a, b) => b.rank - a.rank || b.user.n - a.user.n);
      const left = placed.splice(maxGraphs);
      for (const { name, user, holds } of left) {
        if (qualifies(user)) report.capped += 1;
        if (!holds) continue;
        await this.dropTenantIndex(client, name);
        report.dropped += 1;
        this.log.info({ index: name, maxGraphs }, 'tenant hnsw index dropped: larger users hold the places');
      }
      report.kept = placed.filter((p) => p.holds).length;
      for (const { name, user, holds } of placed) {
        if (holds) continue;
        if (signal?.aborted) break;
        const ms = await this.buildTenantIndex(client, name, user.userId, signal);
        if (ms === undefined) break;
        report.built.push({ user_id: user.userId, memories: user.n, ms });
      }
      return report;
    } catch (error) {
      throw toStoreError(error, 'maintain tenant indexes');
    } finally {
      // A connection that cannot unlock is closed rather than pooled: closing it releases the lock.
      const unlocked = !locked
        ? true
        : await client.query(`SELECT pg_advisory_unlock(hashtext($1))`, [lockKey]).then(
            () => true,
            () => false,
          );
      client.release(!unlocked);
    }
  }

  /** Builds one user's graph; its duration in ms, or undefined when `signal` cancelled it. */
  private async buildTenantIndex(
    client: PoolClient,
    name: string,
    userId: string,
    signal: AbortSignal | undefined,
  ): Promise<number | undefined> {
    const cancel = () =>
      void this.pool
        .query(`SELECT pg_cancel_backend($1)`, [(client as unknown as { processID: number }).processID])
        .catch(() => undefined);
    signal?.addEventListener('abort', cancel, { once: true });
    const start = performance.now();
    try {
      await client.query(`SELECT set_config('maintenance_work_mem', $1, false)`, [this.indexBuildMemory]);
      await client.query(
        `CREATE INDEX CONCURRENTLY ${quoteIdent(name)} ON ${this.t.memories}
         USING ${PGVECTOR_HNSW_INDEX.method} WHERE user_id = ${client.escapeLiteral(userId)}`,
      );
    } catch (error) {
      // Cancelled: the index is left invalid; the next run drops and rebuilds it.
      if (signal?.aborted && (error as { code?: string }).code === '57014') return undefined;
      // An invalid index still takes the table's writes: drop it now rather than at the next run.
      await this.dropTenantIndex(client, name).catch(() => undefined);
      throw error;
    } finally {
      signal?.removeEventListener('abort', cancel);
      await client.query(`RESET maintenance_work_mem`).catch(() => undefined);
    }
    const ms = performance.now() - start;
    this.log.info({ index: name, ms: Math.round(ms) }, 'tenant hnsw index built');
    return ms;
  }

  private async dropTenantIndex(client: PoolClient, name: string): Promise<void> {
    await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${this.qualified(name)}`);
  }

  /** The users' own graphs on the memories table, valid or left invalid by an interrupted build. */
  private async tenantIndexes(client: PoolClient): Promise<{ name: string; valid: boolean }[]> {
    const result = await client.query<{ name: string; valid: boolean }>(
      `SELECT c.relname AS name, i.indisvalid AS valid
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
       WHERE i.indrelid = to_regclass($1) AND starts_with(c.relname, $2)`,
      [this.t.memories, TENANT_INDEX_PREFIX],
    );
    return result.rows;
  }

  /** An index of this schema, quoted for SQL. */
  private qualified(index: string): string {
    return `${quoteIdent(this.schema)}.${quoteIdent(index)}`;
  }

  /**
   * Serialises index drops and builds of this schema for the rest of the transaction (two builders
   * would race on the index name); returns whether the index exists.
   */
  private async lockVectorIndex(client: PoolClient): Promise<boolean> {
    await client.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`${this.schema}.${HNSW_INDEX}`]);
    const found = await client.query<{ present: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS present`, [
      this.qualified(HNSW_INDEX),
    ]);
    return found.rows[0]?.present ?? false;
  }

  /**
   * The memories with these ids, whatever their user, with the migration that wrote each (and their
   * vectors when asked): the Chroma → PostgreSQL migration skips ids already here and verifies by them.
   */
  async findByIds(ids: string[], options: { embeddings?: boolean } = {}): Promise<MemoryRecord[]> {
    const wanted = [...new Set(ids.filter((id) => UUID.test(id)).map((id) => id.toLowerCase()))];
    if (wanted.length === 0) return [];
    const result = await this.query<MemoryRow & { migration_id: string | null; embedding?: string }>(
      'find by ids',
      options.embeddings ? this.sql.findByIdsWithEmbeddings : this.sql.findByIds,
      [wanted],
    );
    // pgvector's text form, `[0.1,0.2,...]`, is a JSON array.
    return result.rows.map((row) => ({
      ...toMemory(row),
      migration_id: row.migration_id,
      embedding: row.embedding ? (JSON.parse(row.embedding) as number[]) : [],
    }));
  }

  /**
   * The memories (any id, any migration) holding one of these content keys, by the rule `upsert`
   * dedups with: the same content hash once per user + session + project. Reads only: the Chroma →
   * PostgreSQL migration's dry run predicts with it the duplicates the run will skip.
   */
  async findByContent(
    keys: Pick<Memory, 'user_id' | 'session_id' | 'project' | 'content_hash'>[],
  ): Promise<Pick<Memory, 'id' | 'user_id' | 'session_id' | 'project' | 'content_hash'>[]> {
    if (keys.length === 0) return [];
    const result = await this.query<
      Pick<Memory, 'id' | 'user_id' | 'session_id' | 'project' | 'content_hash'>
    >('find by content', this.sql.findByContent, [
      keys.map((k) => k.user_id),
      keys.map((k) => k.session_id ?? ''),
      keys.map((k) => k.project ?? ''),
      keys.map((k) => k.content_hash),
    ]);
    return result.rows;
  }

  async stats(filter: MemoryFilter): Promise<MemoryStats> {
    const params = new SqlParams();
    const where = filterToSql(filter, params, { alias: 'm', projectsTable: this.t.projects });
    const result = await this.query<{
      content_type: string | null;
      session_id: string | null;
      project: string | null;
      n: number;
      g: number;
    }>(
      'stats',
      `SELECT m.content_type, m.session_id, p.name AS project, count(*)::int AS n,
              GROUPING(m.content_type, m.session_id, p.name)::int AS g
       FROM ${this.t.memories} m LEFT JOIN ${this.t.projects} p ON p.id = m.project_id
       WHERE ${where}
       GROUP BY GROUPING SETS ((m.content_type), (m.session_id), (p.name), ())`,
      params.values,
    );
    const stats: MemoryStats = { total: 0, by_content_type: {}, by_session: {}, by_project: {} };
    // GROUPING() sets a bit for each column *not* grouped: 0b011 = by content_type, 0b101 = by session…
    for (const row of result.rows) {
      if (row.g === 0b111) stats.total = row.n;
      else if (row.g === 0b011 && row.content_type !== null) stats.by_content_type[row.content_type] = row.n;
      else if (row.g === 0b101 && row.session_id !== null) stats.by_session[row.session_id] = row.n;
      else if (row.g === 0b110 && row.project !== null) stats.by_project[row.project] = row.n;
    }
    return stats;
  }

  async status(): Promise<StoreStatus> {
    try {
      const info = await this.query<{
        server: string;
        pgvector: string | null;
        indexdef: string | null;
        has_table: boolean;
        tenant_indexes: number;
      }>(
        'status',
        `SELECT current_setting('server_version') AS server,
                (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS pgvector,
                (SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'memories' AND indexname = $2) AS indexdef,
                to_regclass($3) IS NOT NULL AS has_table,
                (SELECT count(*)::int FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                 WHERE i.indrelid = to_regclass($3) AND i.indisvalid AND starts_with(c.relname, $4)) AS tenant_indexes`,
        [this.schema, HNSW_INDEX, this.t.memories, TENANT_INDEX_PREFIX],
      );
      const row = info.rows[0]!;
      const versions: Record<string, string> = { postgres: row.server };
      if (row.pgvector) versions.pgvector = row.pgvector;
      const warnings = row.pgvector ? pgvectorWarnings(row.pgvector) : [];
      if (!row.has_table) {
        return {
          backend: this.backend,
          reachable: true,
          versions,
          ...(warnings.length ? { warnings } : {}),
          error: `schema "${this.schema}" is not initialized`,
        };
      }
      // /readyz and /status call this often: count exactly up to a limit, estimate past it.
      const counted = await this.query<{ n: number; estimate: number | null }>(
        'status',
        `SELECT (SELECT count(*)::int FROM (SELECT 1 FROM ${this.t.memories} LIMIT $1) s) AS n,
                (SELECT reltuples::float8 FROM pg_class WHERE oid = to_regclass($2)) AS estimate`,
        [this.exactCountLimit + 1, this.t.memories],
      );
      const { n, estimate } = counted.rows[0]!;
      const estimated = n > this.exactCountLimit;
      return {
        backend: this.backend,
        reachable: true,
        memory_count: estimated ? Math.max(n, Math.round(estimate ?? 0)) : n,
        ...(estimated ? { memory_count_estimated: true } : {}),
        index: this.describeIndex(row.indexdef),
        tenant_indexes: row.tenant_indexes,
        versions,
        ...(warnings.length ? { warnings } : {}),
      };
    } catch (error) {
      return { backend: this.backend, reachable: false, error: toStoreError(error, 'status').message };
    }
  }

  async close(): Promise<void> {
    if (this.ownsPool) await this.pool.end();
  }

  /** e.g. `hnsw (halfvec_cosine_ops, m=16, ef_construction=64); ef_search=400, overfetch=2, iterative_scan=relaxed_order, …` */
  private describeIndex(indexdef: string | null): string {
    const search = `ef_search=${this.efSearch} (${this.tenantEfSearch} in a user's own graph), overfetch=${this.overfetch}, iterative_scan=relaxed_order, max_scan_tuples=${this.maxScanTuples}, exact scan ≤ ${this.exactScanThreshold} rows`;
    if (!indexdef) return `no HNSW index (exact scans only); ${search}`;
    const method = /USING (\w+) \(.* (\w+_ops)\)/.exec(indexdef);
    const withClause = /WITH \(([^)]*)\)/
      .exec(indexdef)?.[1]
      ?.replace(/'/g, '')
      .replace(/\s*=\s*/g, '=');
    const parts = [method?.[2], withClause].filter(Boolean).join(', ');
    return `${method?.[1] ?? 'index'} (${parts}); ${search}`;
  }

  private columns(m: string, p: string): string {
    return [
      `${m}.id`,
      `${m}.user_id`,
      `${m}.session_id`,
      `${m}.session_type`,
      `${p}.name AS project`,
      `${m}.content`,
      `${m}.content_type`,
      `${m}.metadata`,
      `${m}.content_hash`,
      `${m}.embedding_model`,
      `${m}.created_at`,
      `${m}.updated_at`,
    ].join(', ');
  }

  private query<R extends QueryResultRow>(
    operation: string,
    statement: string | Prepared,
    values: unknown[],
  ) {
    const config = typeof statement === 'string' ? { text: statement, values } : { ...statement, values };
    return this.withClient(operation, (client) => client.query<R>(config));
  }

  /** The statements whose text is fixed for this store, named (`prepared`). */
  private statements() {
    const { memories, projects, sessions, users } = this.t;
    const byId = (more = '') =>
      `SELECT ${this.columns('m', 'p')}${more}
       FROM ${memories} m LEFT JOIN ${projects} p ON p.id = m.project_id`;
    return {
      insertUsers: prepared(`INSERT INTO ${users} (id) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`),
      insertProjects: prepared(
        `INSERT INTO ${projects} (user_id, name)
         SELECT u, n FROM unnest($1::text[], $2::text[]) AS t(u, n) ORDER BY u, n
         ON CONFLICT (user_id, name) DO NOTHING`,
      ),
      projectIds: prepared(
        `SELECT p.id, p.user_id, p.name FROM ${projects} p
         JOIN unnest($1::text[], $2::text[]) AS t(u, n) ON p.user_id = t.u AND p.name = t.n`,
      ),
      upsertSessions: prepared(
        `INSERT INTO ${sessions} AS s (user_id, id, project_id, session_type)
         SELECT DISTINCT ON (u, sid) u, sid, pid, st
         FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[]) AS t(u, sid, pid, st)
         ORDER BY u, sid
         ON CONFLICT (user_id, id) DO UPDATE
           SET project_id = coalesce(s.project_id, EXCLUDED.project_id),
               session_type = coalesce(EXCLUDED.session_type, s.session_type)
           WHERE (s.project_id IS NULL AND EXCLUDED.project_id IS NOT NULL)
              OR (EXCLUDED.session_type IS NOT NULL AND s.session_type IS DISTINCT FROM EXCLUDED.session_type)`,
      ),
      lookupExisting: prepared(
        `SELECT id, user_id, session_id, project_id::text AS project_id, content_hash, migration_id
         FROM ${memories} WHERE id = ANY($1::uuid[])
       UNION
       SELECT id, user_id, session_id, project_id::text, content_hash, migration_id
         FROM ${memories}
        WHERE (user_id, coalesce(session_id, ''), coalesce(project_id, 0), content_hash) IN (
          SELECT * FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[]))`,
      ),
      insertMemories: prepared(
        `INSERT INTO ${memories} AS m (id, user_id, session_id, session_type, project_id, content, content_type,
         metadata, content_hash, embedding, embedding_model, migration_id, created_at, updated_at)
       SELECT t.id, t.user_id, t.session_id, t.session_type, t.project_id, t.content, t.content_type,
              t.metadata::jsonb, t.content_hash, t.embedding, t.embedding_model, t.migration_id,
              coalesce(t.created_at, now()), coalesce(t.updated_at, t.created_at, now())
       FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[],
                   $9::text[], $10::vector[], $11::text[], $12::text[], $13::timestamptz[], $14::timestamptz[])
         AS t(id, user_id, session_id, session_type, project_id, content, content_type, metadata, content_hash,
              embedding, embedding_model, migration_id, created_at, updated_at)
       ON CONFLICT (id) DO UPDATE SET
         session_id = EXCLUDED.session_id,
         session_type = EXCLUDED.session_type,
         project_id = EXCLUDED.project_id,
         content = EXCLUDED.content,
         content_type = EXCLUDED.content_type,
         metadata = EXCLUDED.metadata,
         content_hash = EXCLUDED.content_hash,
         embedding = EXCLUDED.embedding,
         embedding_model = EXCLUDED.embedding_model,
         migration_id = EXCLUDED.migration_id,
         updated_at = EXCLUDED.updated_at
       WHERE m.user_id = EXCLUDED.user_id
       RETURNING m.id, (m.xmax = 0) AS inserted`,
      ),
      get: prepared(`${byId()} WHERE m.user_id = $1 AND m.id = $2::uuid`),
      delete: prepared(`DELETE FROM ${memories} WHERE user_id = $1 AND id = $2::uuid`),
      adoptMigrated: prepared(
        `UPDATE ${memories} SET migration_id = NULL WHERE id = ANY($1::uuid[]) AND migration_id IS NOT NULL`,
      ),
      findByIds: prepared(`${byId(', m.migration_id')} WHERE m.id = ANY($1::uuid[])`),
      findByIdsWithEmbeddings: prepared(
        `${byId(', m.migration_id, m.embedding::text AS embedding')} WHERE m.id = ANY($1::uuid[])`,
      ),
      // Matches the dedup index's expressions; a project not created yet (no row p) holds nothing.
      findByContent: prepared(
        `SELECT DISTINCT m.id, m.user_id, m.session_id, p.name AS project, m.content_hash
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS k(user_id, session_id, project, content_hash)
         LEFT JOIN ${projects} p ON p.user_id = k.user_id AND p.name = k.project
         JOIN ${memories} m ON m.user_id = k.user_id
          AND coalesce(m.session_id, '') = k.session_id
          AND coalesce(m.project_id, 0) = CASE WHEN k.project = '' THEN 0 ELSE p.id END
          AND m.content_hash = k.content_hash`,
      ),
    };
  }

  private transaction<T>(
    operation: string,
    work: (client: PoolClient) => Promise<T>,
    readOnly = false,
    isolation: 'READ COMMITTED' | 'REPEATABLE READ' = 'READ COMMITTED',
  ): Promise<T> {
    return this.withClient(operation, work, {
      begin: `BEGIN ISOLATION LEVEL ${isolation}${readOnly ? ' READ ONLY' : ''}`,
    });
  }

  /**
   * Runs `work` on a pooled connection, in a transaction when `begin` is given. A connection a search
   * left its settings on (`applySearchSettings`) gets `enable_sort` and `jit` back first, unless this
   * is a search too.
   */
  private async withClient<T>(
    operation: string,
    work: (client: PoolClient) => Promise<T>,
    { begin, search = false }: { begin?: string; search?: boolean } = {},
  ): Promise<T> {
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw toStoreError(error, operation);
    }
    let broken: Error | undefined;
    // A checked-out client has no pool listener: a connection lost now would be an unhandled 'error'.
    const onError = (error: Error) => (broken = error);
    client.on('error', onError);
    let open = false;
    try {
      if (!search) await this.resetSearchSettings(client);
      if (begin) {
        await client.query(begin);
        open = true;
      }
      const result = await work(client);
      if (open) await client.query('COMMIT');
      return result;
    } catch (error) {
      if (isConnectionError(error)) broken = error as Error;
      // A connection whose ROLLBACK fails is in an unknown state: discard it.
      else if (open) await client.query('ROLLBACK').catch((rollbackError: Error) => (broken = rollbackError));
      throw toStoreError(error, operation);
    } finally {
      // A connection that failed is discarded rather than returned to the pool.
      client.off('error', onError);
      client.release(broken);
    }
  }

  /** Gives a connection that carries a search's settings its own `enable_sort` and `jit` back. */
  private async resetSearchSettings(client: PoolClient): Promise<void> {
    if (!searchSessions.has(client)) return;
    await client.query('RESET enable_sort; RESET jit');
    searchSessions.delete(client);
  }
}

/** What `probePgvector` found: whether PostgreSQL answers and can hold vectors. */
export interface PgvectorProbe {
  ok: boolean;
  /** Why `ok` is false. */
  reason?: string;
  serverVersion?: string;
  /** Installed version, or the version available to install. */
  pgvectorVersion?: string;
  installed?: boolean;
}

/**
 * Checks that a PostgreSQL server answers and that pgvector is installed or can be (for backend
 * selection). Never throws.
 */
export async function probePgvector(
  connectionString: string,
  options: { timeoutMs?: number } = {},
): Promise<PgvectorProbe> {
  const timeout = options.timeoutMs ?? 3000;
  const client = new Client({ connectionString, connectionTimeoutMillis: timeout, query_timeout: timeout });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const result = await client.query<{ server: string; installed: string | null; available: string | null }>(
      `SELECT current_setting('server_version') AS server,
              (SELECT extversion FROM pg_extension WHERE extname = 'vector') AS installed,
              (SELECT default_version FROM pg_available_extensions WHERE name = 'vector') AS available`,
    );
    const row = result.rows[0]!;
    const version = row.installed ?? row.available ?? undefined;
    if (!version)
      return {
        ok: false,
        reason: 'pgvector is not available on this server',
        serverVersion: row.server,
        installed: false,
      };
    return {
      ok: true,
      serverVersion: row.server,
      pgvectorVersion: version,
      installed: row.installed !== null,
    };
  } catch (error) {
    return { ok: false, reason: `PostgreSQL does not answer: ${errorMessage(error)}` };
  } finally {
    await client.end().catch(() => undefined);
  }
}
