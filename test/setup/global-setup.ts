import { execFileSync } from 'node:child_process';
import path from 'node:path';

/**
 * Makes sure PostgreSQL+pgvector, Redis and Chroma answer before integration and end-to-end tests,
 * starting them natively (infra/local/up) where they do not. Idempotent and quick when all are up.
 */
export default function globalSetup(): void {
  const root = path.resolve(__dirname, '../..');
  execFileSync('bash', [path.join(root, 'infra/local/up')], { stdio: 'inherit', env: process.env });
}
