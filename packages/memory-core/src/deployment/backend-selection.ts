import { ConflictError, UnavailableError, ValidationError } from '../errors';
import type { MemoryBackendSetting } from '../config/env-fields';
import { probePgvector, type PgvectorProbe } from '../storage/pgvector';
import type { BackendChoice, DeploymentRegistry } from './deployment-registry';

function redact(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || 5432}${u.pathname}`;
  } catch {
    return 'DATABASE_URL';
  }
}

export interface BackendSelectionSettings {
  setting: MemoryBackendSetting;
  databaseUrl?: string | undefined;
  /**
   * Probes of an unreachable PostgreSQL before `auto` settles on Chroma, so that a server that is
   * restarting when the first service starts does not make Chroma the recorded backend. @defaultValue 5
   */
  probeAttempts?: number;
  /** @defaultValue 2000 */
  probeDelayMs?: number;
}

/** Probes until PostgreSQL answers (with or without pgvector) or the attempts run out. */
async function probeWithRetries(
  url: string,
  probe: (url: string) => Promise<PgvectorProbe>,
  attempts: number,
  delayMs: number,
): Promise<PgvectorProbe> {
  for (let attempt = 1; ; attempt += 1) {
    const result = await probe(url);
    const answered = result.ok || result.serverVersion !== undefined;
    if (answered || attempt >= attempts) return result;
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
}

/**
 * The backend of this deployment. The first service to decide records its choice in the registry and
 * every later caller gets that choice, so the services never disagree. `auto` picks PostgreSQL when
 * DATABASE_URL answers with pgvector, else Chroma; `postgres` and `chroma` force one. A recorded choice
 * that contradicts a forcing setting is an error, not a silent switch.
 */
export async function selectBackend(
  settings: BackendSelectionSettings,
  registry: DeploymentRegistry,
  probe: (url: string) => Promise<PgvectorProbe> = probePgvector,
): Promise<BackendChoice> {
  const recorded = await registry.getBackend();
  if (recorded) {
    if (settings.setting !== 'auto' && settings.setting !== recorded.backend) {
      throw new ConflictError(
        `this deployment uses ${recorded.backend} (${recorded.reason}) but MEMORY_BACKEND=${settings.setting}; switch explicitly with "npm run backend -- use ${settings.setting}"`,
        { recorded },
        'backend_mismatch',
      );
    }
    return recorded;
  }
  const decide = (backend: BackendChoice['backend'], reason: string): BackendChoice => ({
    backend,
    reason,
    decided_at: new Date().toISOString(),
  });
  let choice: BackendChoice;
  if (settings.setting === 'chroma') {
    choice = decide('chroma', 'MEMORY_BACKEND=chroma → chroma');
  } else if (!settings.databaseUrl) {
    if (settings.setting === 'postgres') {
      // A setting, not a server still starting: no retry makes it appear.
      throw new ValidationError(
        'MEMORY_BACKEND=postgres but DATABASE_URL is unset',
        undefined,
        'invalid_config',
      );
    }
    choice = decide('chroma', 'MEMORY_BACKEND=auto: DATABASE_URL unset → chroma');
  } else {
    const where = redact(settings.databaseUrl);
    const result = await probeWithRetries(
      settings.databaseUrl,
      probe,
      settings.probeAttempts ?? 5,
      settings.probeDelayMs ?? 2_000,
    );
    if (result.ok) {
      choice = decide(
        'postgres',
        `MEMORY_BACKEND=${settings.setting}: PostgreSQL at ${where} answers with pgvector ${result.pgvectorVersion} → postgres`,
      );
    } else if (settings.setting === 'postgres') {
      throw new UnavailableError(`MEMORY_BACKEND=postgres but PostgreSQL at ${where}: ${result.reason}`, {
        code: 'backend_unavailable',
      });
    } else {
      choice = decide('chroma', `MEMORY_BACKEND=auto: PostgreSQL at ${where}: ${result.reason} → chroma`);
    }
  }
  return registry.recordBackend(choice);
}
