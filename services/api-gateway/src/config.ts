import { z } from 'zod';
import { coreEnvShape, intVar, loadConfig, portVar } from 'memory-core';

export const GatewayEnv = z.object({
  ...coreEnvShape,
  GATEWAY_PORT: portVar(8000),
  GATEWAY_HOST: z.string().default('127.0.0.1'),
  SEARCH_SERVICE_URL: z
    .url({ protocol: /^https?$/, error: 'must be an http(s) URL' })
    .default('http://127.0.0.1:8010'),
  /** Largest request body; bigger ones get 413. */
  BODY_LIMIT: z
    .string()
    .regex(/^\d+(b|kb|mb)$/i, 'must look like 512kb or 5mb')
    .default('5mb'),
  /** How long `POST /api/memory/store?wait=true` waits for the job before answering 202. */
  STORE_WAIT_TIMEOUT_MS: intVar(15_000, 100, 300_000),
  /** Timeout of a call to the search service. */
  SEARCH_TIMEOUT_MS: intVar(10_000, 100, 300_000),
  /** Operator's user name for Bull Board and migrations (with ADMIN_PASSWORD). */
  ADMIN_USER: z
    .string()
    .regex(/^[^:]{1,64}$/, 'must be 1-64 characters without ":"')
    .default('admin'),
  /** Unset: operators only from this machine. Set: HTTP basic auth from anywhere (operator-access.ts). */
  ADMIN_PASSWORD: z.string().min(12, 'must be at least 12 characters').optional(),
});
export type GatewayConfig = ReturnType<typeof loadGatewayConfig>;

export function loadGatewayConfig(env: NodeJS.ProcessEnv = process.env) {
  return loadConfig(GatewayEnv, env);
}
