import { z } from 'zod';
import {
  ErrorResponse,
  MemoryResponse,
  MigrateChromaRequest,
  SearchRequest,
  SearchResultResponse,
  StoreBatchRequest,
  StoreRequest,
} from 'memory-core';

const schema = (s: z.ZodType, io: 'input' | 'output' = 'input') =>
  z.toJSONSchema(s, { target: 'openapi-3.0', io, unrepresentable: 'any' }) as Record<string, unknown>;

const json = (s: z.ZodType, io: 'input' | 'output' = 'output') => ({
  'application/json': { schema: schema(s, io) },
});

const errors = {
  '400': { description: 'Invalid request', content: json(ErrorResponse) },
  '503': {
    description: 'A dependency (Redis, the store, the search service) does not answer',
    content: json(ErrorResponse),
  },
};

const uuidParam = (name: string) => ({
  name,
  in: 'path',
  required: true,
  schema: { type: 'string', format: 'uuid' },
});
const stringParam = (name: string) => ({ name, in: 'path', required: true, schema: { type: 'string' } });
const pageParams = [
  { name: 'limit', in: 'query', schema: { type: 'integer', minimum: 1, maximum: 500, default: 50 } },
  { name: 'offset', in: 'query', schema: { type: 'integer', minimum: 0, default: 0 } },
];
const ListResponse = z.object({
  memories: z.array(MemoryResponse),
  total: z.number().int(),
  limit: z.number(),
  offset: z.number(),
});
const anyObject = { 'application/json': { schema: { type: 'object', additionalProperties: true } } };

/** The OpenAPI 3 document of the gateway, generated from the same zod schemas that validate requests. */
export function openApiDocument() {
  return {
    openapi: '3.0.3',
    info: {
      title: 'Memory service API',
      version: '0.1.0',
      description:
        'Store text memories, embedded with all-MiniLM-L6-v2, and search them by cosine similarity.',
    },
    paths: {
      '/api/memory/initialize': {
        post: {
          summary: 'Initialize the store and backend selection (idempotent)',
          responses: { '200': { description: 'Status', content: anyObject }, ...errors },
        },
      },
      '/api/memory/status': {
        get: {
          summary: 'Backend and why, model, counts, queues, workers, search service',
          responses: { '200': { description: 'Status', content: anyObject } },
        },
      },
      '/api/memory/store': {
        post: {
          summary: 'Queue one memory for embedding and storage',
          parameters: [
            {
              name: 'wait',
              in: 'query',
              schema: { type: 'boolean' },
              description: 'Answer 201 with the stored memory once the job completes',
            },
            { name: 'Idempotency-Key', in: 'header', schema: { type: 'string', maxLength: 255 } },
          ],
          requestBody: { required: true, content: json(StoreRequest, 'input') },
          responses: {
            '201': { description: 'Stored (wait=true)', content: json(MemoryResponse) },
            '202': {
              description: 'Queued',
              content: json(
                z.object({ memory_id: z.uuid(), job_id: z.string(), status: z.literal('queued') }),
              ),
            },
            '409': { description: 'Idempotency-Key reused with another body', content: json(ErrorResponse) },
            '413': { description: 'Body too large', content: json(ErrorResponse) },
            '415': { description: 'Body is not JSON', content: json(ErrorResponse) },
            ...errors,
          },
        },
      },
      '/api/memory/store/batch': {
        post: {
          summary: 'Queue up to 1,000 memories as one job',
          parameters: [{ name: 'Idempotency-Key', in: 'header', schema: { type: 'string', maxLength: 255 } }],
          requestBody: { required: true, content: json(StoreBatchRequest, 'input') },
          responses: {
            '202': {
              description: 'Queued',
              content: json(
                z.object({ job_id: z.string(), memory_ids: z.array(z.uuid()), status: z.literal('queued') }),
              ),
            },
            ...errors,
          },
        },
      },
      '/api/memory/jobs/{id}': {
        get: {
          summary:
            'State, progress, result or failure reason of a job: a store job to its user, a migration job to operators. A store job waiting out a store that does not answer has `state: delayed` and `deferred: {reason, retry_at}`',
          parameters: [stringParam('id')],
          responses: {
            '200': { description: 'Job', content: anyObject },
            '404': {
              description: "Unknown job, or one that is not the caller's",
              content: json(ErrorResponse),
            },
          },
        },
      },
      '/api/memory/migrate': {
        post: {
          summary:
            'Queue a Chroma → PostgreSQL migration (progress and result: GET /api/memory/jobs/{job_id}); operators only',
          description:
            'Spans every user of the collection: answers requests from the gateway’s own machine, or HTTP basic auth as ADMIN_USER / ADMIN_PASSWORD once that is set.',
          requestBody: { required: false, content: json(MigrateChromaRequest, 'input') },
          responses: {
            '202': {
              description: 'Queued',
              content: json(
                z.object({ job_id: z.string(), migration_id: z.string(), status: z.literal('queued') }),
              ),
            },
            '401': {
              description: 'Operator credentials required (operator_only)',
              content: json(ErrorResponse),
            },
            '403': {
              description: 'Not from this machine and no ADMIN_PASSWORD set (operator_only)',
              content: json(ErrorResponse),
            },
            ...errors,
          },
        },
      },
      '/api/memory/search': {
        post: {
          summary: 'Similarity search with filters',
          requestBody: { required: true, content: json(SearchRequest, 'input') },
          responses: {
            '200': {
              description: 'Results, best first',
              headers: {
                'Server-Timing': {
                  description:
                    "With SERVER_TIMING=true on the search service: `embed;dur=…, store;dur=…, search-service;dur=…` (ms): embedding the query, the store's search, and the gateway's whole hop to the search service",
                  schema: { type: 'string' },
                },
              },
              content: json(z.object({ results: z.array(SearchResultResponse), backend: z.string() })),
            },
            ...errors,
          },
        },
      },
      '/api/memory/stats': {
        get: {
          summary: 'Totals per content type, session and project',
          responses: { '200': { description: 'Stats', content: anyObject } },
        },
      },
      '/api/memory/session/{id}': {
        get: {
          summary: 'Memories of a session, newest first',
          parameters: [stringParam('id'), ...pageParams],
          responses: { '200': { description: 'Page', content: json(ListResponse) }, ...errors },
        },
        delete: {
          summary: 'Delete every memory of a session, including ones still queued',
          parameters: [stringParam('id')],
          responses: {
            '200': {
              description:
                '`deleted`: the memories removed, stored or still queued (dropped when their job runs); `queued`: how many of them were still queued',
              content: json(
                z.object({ session_id: z.string(), deleted: z.number().int(), queued: z.number().int() }),
              ),
            },
            ...errors,
          },
        },
      },
      '/api/memory/project/{name}': {
        get: {
          summary: 'Memories of a project, newest first',
          parameters: [stringParam('name'), ...pageParams],
          responses: { '200': { description: 'Page', content: json(ListResponse) }, ...errors },
        },
      },
      '/api/memory/{id}': {
        get: {
          summary: 'One memory',
          parameters: [uuidParam('id')],
          responses: {
            '200': { description: 'Memory', content: json(MemoryResponse) },
            '404': { description: 'Not found', content: json(ErrorResponse) },
            ...errors,
          },
        },
        delete: {
          summary: 'Delete one memory (wins over its store job, single or batch, if still queued or running)',
          parameters: [uuidParam('id')],
          responses: {
            '200': { description: 'Deleted', content: anyObject },
            '404': { description: 'Not found', content: json(ErrorResponse) },
            ...errors,
          },
        },
      },
    },
  };
}
