import { ConflictError, UnavailableError } from '../errors';
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
      throw new UnavailableError('MEMORY_BACKEND=postgres but DATABASE_URL is unset', {
        code: 'backend_unavailable',
      });
    }
    choice = decide('chroma', 'MEMORY_BACKEND=auto: DATABASE_URL unset → chroma');
  } else {
    const where = redact(settings.databaseUrl);
    const result = await probe(settings.databaseUrl);
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
