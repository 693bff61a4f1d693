import { z } from 'zod';

/** Limits that keep a memory small enough to embed, store and return quickly. */
export const MemoryLimits = {
  /** Characters of content. MiniLM reads 256 word pieces; longer text is stored but truncated when embedded. */
  contentMaxChars: 10_000,
  metadataMaxKeys: 32,
  metadataKeyMaxChars: 64,
  metadataStringMaxChars: 1_000,
  /** Bytes of the metadata object serialised as JSON. */
  metadataMaxBytes: 8_192,
  scopeValueMaxChars: 128,
  batchMaxMemories: 1_000,
  searchMaxResults: 100,
} as const;

export const EMBEDDING_DIMENSION = 384;

/** Scope fields: columns in PostgreSQL, plain keys in Chroma metadata. */
export const SCOPE_FIELDS = ['user_id', 'session_id', 'project', 'content_type', 'session_type'] as const;
export type ScopeField = (typeof SCOPE_FIELDS)[number];

/**
 * Metadata keys the stores use for their own fields. `session_type` is not reserved: the seed put it
 * in metadata (`{"session_type": "philosophy"}`), so a metadata `session_type` also sets the scope field.
 */
export const RESERVED_METADATA_KEYS = new Set<string>([
  'user_id',
  'session_id',
  'project',
  'content_type',
  'created_at',
  'updated_at',
  'created_at_ms',
  'content_hash',
  'embedding_model',
  'migration_id',
  'document',
  'id',
]);

/**
 * Letters, digits, `_ . -`; starts with a letter or underscore. Safe as a JSON path key in SQL. Not
 * `__proto__`, which a JavaScript object cannot hold as a plain key (`refuseProtoKey`).
 */
export const METADATA_KEY_PATTERN = /^(?!__proto__$)[A-Za-z_][A-Za-z0-9_.-]*$/;

/** An unpaired UTF-16 surrogate, which JSON can carry (`"\ud800"`) and UTF-8 cannot. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Whether the stores can keep a string as it was sent. PostgreSQL text cannot hold NUL; an unpaired
 * surrogate has no UTF-8 form, so PostgreSQL would keep U+FFFD in its place (or refuse it inside
 * JSON) and Chroma refuses it: both are refused at the door instead.
 */
export function isStorableText(value: string): boolean {
  return !value.includes('\u0000') && !LONE_SURROGATE.test(value);
}
/** What `isStorableText` refuses, said of `what`. */
export const unstorableText = (what: string) =>
  `${what} must not contain the NUL character or an unpaired UTF-16 surrogate`;
const storable = (what: string) => ({ message: unstorableText(what) });

/**
 * JSON.parse makes `"__proto__"` an ordinary key, which zod's records leave out of their output
 * without a word: the key would vanish from stored metadata, and a filter on it would match
 * everything. Refused instead.
 */
export function refuseProtoKey<T extends z.ZodType>(schema: T, what: string) {
  return z
    .unknown()
    .superRefine((value, ctx) => {
      if (
        value !== null &&
        typeof value === 'object' &&
        Object.prototype.hasOwnProperty.call(value, '__proto__')
      )
        ctx.addIssue({
          code: 'custom',
          message: `"__proto__" is not allowed as a ${what} key`,
          path: ['__proto__'],
        });
    })
    .pipe(schema);
}

export const ScopeValue = z
  .union([z.string(), z.number().int().nonnegative()])
  .transform((v) => String(v).trim())
  .pipe(
    z
      .string()
      .refine(isStorableText, storable('scope values'))
      .min(1, 'must not be empty')
      // A URL path cannot carry them (`/api/memory/session/..` is the parent path): never listable.
      .refine((v) => v !== '.' && v !== '..', { message: 'must not be "." or ".."' })
      .max(MemoryLimits.scopeValueMaxChars, `must be at most ${MemoryLimits.scopeValueMaxChars} characters`),
  );

export const MetadataValue = z.union(
  [
    z.string().max(MemoryLimits.metadataStringMaxChars).refine(isStorableText, storable('metadata values')),
    z.number().finite(),
    z.boolean(),
  ],
  { error: 'metadata values must be strings, numbers or booleans (no nested objects, arrays or null)' },
);
export type MetadataValue = z.infer<typeof MetadataValue>;

export const MetadataKey = z
  .string()
  .max(
    MemoryLimits.metadataKeyMaxChars,
    `metadata keys are at most ${MemoryLimits.metadataKeyMaxChars} characters`,
  )
  .regex(
    METADATA_KEY_PATTERN,
    'metadata keys use letters, digits, "_", "." and "-", starting with a letter or "_"',
  )
  .refine((k) => !RESERVED_METADATA_KEYS.has(k), { message: 'this metadata key is reserved' });

/** A flat JSON object of string, number and boolean values. */
export const Metadata = refuseProtoKey(
  z
    .record(MetadataKey, MetadataValue, {
      error: (issue) =>
        issue.code === 'invalid_type' && issue.expected === 'record'
          ? 'metadata must be an object of string, number or boolean values'
          : undefined,
    })
    .refine((m) => Object.keys(m).length <= MemoryLimits.metadataMaxKeys, {
      message: `metadata has at most ${MemoryLimits.metadataMaxKeys} keys`,
    })
    .refine((m) => Buffer.byteLength(JSON.stringify(m)) <= MemoryLimits.metadataMaxBytes, {
      message: `metadata is at most ${MemoryLimits.metadataMaxBytes} bytes as JSON`,
    }),
  'metadata',
);
export type Metadata = z.infer<typeof Metadata>;

export const Content = z
  .string({ error: 'content must be a string' })
  .max(MemoryLimits.contentMaxChars, `content is at most ${MemoryLimits.contentMaxChars} characters`)
  .refine(isStorableText, storable('content'))
  .refine((c) => c.trim().length > 0, { message: 'content must not be empty or whitespace only' });

export const ContentType = z
  .string()
  .trim()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9_.-]+$/, 'content_type uses letters, digits, "_", "." and "-"');

/**
 * What a client sends to store one memory (the seed's request body). A metadata key `session_type` is
 * the seed's way to set the scope field of that name, and filters on `session_type` always mean the
 * scope field: so the key must be a valid session type, and the same one when both are given.
 */
export const MemoryInput = z
  .strictObject({
    content: Content,
    session_id: ScopeValue.optional(),
    session_type: ScopeValue.optional(),
    project: ScopeValue.optional(),
    content_type: ContentType.default('note'),
    metadata: Metadata.default({}),
  })
  .superRefine((input, ctx) => {
    if (!('session_type' in input.metadata)) return;
    const path = ['metadata', 'session_type'];
    const alias = ScopeValue.safeParse(input.metadata.session_type);
    if (!alias.success) {
      const rule = alias.error.issues[0]?.message ?? '';
      const detail = /^must /.test(rule) ? rule : 'must be a string or a non-negative integer';
      ctx.addIssue({ code: 'custom', path, message: `sets session_type, so it ${detail}` });
    } else if (input.session_type !== undefined && input.session_type !== alias.data) {
      ctx.addIssue({
        code: 'custom',
        path,
        message: 'sets session_type, so it must equal session_type when both are given',
      });
    }
  });
export type MemoryInput = z.input<typeof MemoryInput>;
export type MemoryInputParsed = z.output<typeof MemoryInput>;

/** A stored memory, as every store returns it. Timestamps are ISO 8601 strings. */
export interface Memory {
  id: string;
  user_id: string;
  session_id: string | null;
  session_type: string | null;
  project: string | null;
  content: string;
  content_type: string;
  metadata: Metadata;
  content_hash: string;
  embedding_model: string;
  created_at: string;
  updated_at: string;
}

/** A memory with its vector, as written by `MemoryStore.upsert`. */
export interface MemoryRecord extends Memory {
  embedding: Float32Array | number[];
  /** Set by the Chroma → PostgreSQL migration so that a rollback removes exactly its rows. */
  migration_id?: string | null;
}

export interface SearchHit extends Memory {
  /** Cosine similarity, 1 = same direction. */
  similarity: number;
}
