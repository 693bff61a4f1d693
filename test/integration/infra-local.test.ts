import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { Client } from 'pg';
import { repoRoot, servers, uniqueName } from '../setup/servers';

// The scripts log to stderr: run them through a shell that merges it into what we read.
const run = (name: 'up' | 'down') =>
  execFileSync('bash', ['-c', `bash "${path.join(repoRoot, 'infra/local', name)}" 2>&1`], {
    encoding: 'utf8',
    env: process.env,
  });

const chromaAnswers = () =>
  fetch(`${servers.chromaUrl}/api/v2/heartbeat`).then(
    (r) => r.ok,
    () => false,
  );

/**
 * infra/local: `up` is idempotent, and `down` then `up` brings back a working state with the data of
 * all three servers intact. This test stops and restarts the servers that `up` started, so it only
 * runs where `up` started them (as on CI, or after `npm start` on a fresh machine).
 */
describe('infra/local up and down', () => {
  it('does nothing the second time up runs', () => {
    const output = run('up');
    expect(output).not.toMatch(/starting|installing|building/);
    expect(output).toMatch(/all servers up/);
  });

  const startedByUp = () =>
    ['redis.pid', 'chroma.pid'].every((f) => existsSync(path.join(repoRoot, '.data/run', f)));

  (startedByUp() ? it : it.skip)('keeps PostgreSQL, Redis and Chroma data across down and up', async () => {
    const marker = uniqueName('persist');
    const pg = new Client({ connectionString: servers.databaseUrl });
    await pg.connect();
    await pg.query(`CREATE TABLE ${marker} (v text)`);
    await pg.query(`INSERT INTO ${marker} VALUES ('kept')`);
    await pg.end();
    const redis = new Redis(servers.redisUrl);
    await redis.set(marker, 'kept');
    await redis.quit();
    const collection = await fetch(
      `${servers.chromaUrl}/api/v2/tenants/default_tenant/databases/default_database/collections`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: marker }),
      },
    );
    expect(collection.ok).toBe(true);

    run('down');
    expect(await chromaAnswers()).toBe(false);
    expect(run('up')).toMatch(/all servers up/);

    const pgAfter = new Client({ connectionString: servers.databaseUrl });
    await pgAfter.connect();
    expect((await pgAfter.query(`SELECT v FROM ${marker}`)).rows).toEqual([{ v: 'kept' }]);
    await pgAfter.query(`DROP TABLE ${marker}`);
    await pgAfter.end();
    const redisAfter = new Redis(servers.redisUrl);
    expect(await redisAfter.get(marker)).toBe('kept');
    await redisAfter.del(marker);
    await redisAfter.quit();
    const got = await fetch(
      `${servers.chromaUrl}/api/v2/tenants/default_tenant/databases/default_database/collections/${marker}`,
    );
    expect(got.ok).toBe(true);
    await fetch(
      `${servers.chromaUrl}/api/v2/tenants/default_tenant/databases/default_database/collections/${marker}`,
      { method: 'DELETE' },
    );
  });
});
