import { createTestSchema } from '../setup/servers';
import { createStack, type ServiceName, type Stack } from '../setup/service-processes';

/**
 * Every service starts the same way (`startService`): a bad setting ends it at once with one line
 * naming the setting, and SIGTERM runs its shutdown steps and exits cleanly.
 */
describe('service start-up and shutdown', () => {
  let stack: Stack;
  let schema: Awaited<ReturnType<typeof createTestSchema>>;

  beforeAll(async () => {
    schema = await createTestSchema('lifecycle');
    stack = createStack({ backend: 'postgres', schema: schema.schema });
  });

  afterAll(async () => {
    await stack?.dispose();
    await schema?.drop();
  });

  const portSetting: Record<ServiceName, string> = {
    'api-gateway': 'GATEWAY_PORT',
    'search-service': 'SEARCH_SERVICE_PORT',
    'embedding-worker': 'WORKER_METRICS_PORT',
  };
  const byName = (name: ServiceName) => Object.values(stack.services).find((s) => s.name === name)!;

  it.each(Object.keys(portSetting) as ServiceName[])(
    '%s exits with 1 and names the setting when its config is invalid',
    async (name) => {
      const service = byName(name);
      const setting = portSetting[name];
      const failure = await service.start({ env: { [setting]: 'not-a-port' }, timeoutMs: 30_000 }).then(
        () => undefined,
        (error: Error) => error.message,
      );
      expect(failure).toContain(`${name} exited with 1`);
      const fatal = service.logs.split('\n').filter((line) => line.includes('start-up failed'));
      expect(fatal).toHaveLength(1);
      expect(fatal[0]).toContain(setting);
    },
  );

  it('every service stops on SIGTERM with exit code 0', async () => {
    await stack.start();
    for (const name of ['api-gateway', 'search-service', 'embedding-worker'] as ServiceName[]) {
      const service = byName(name);
      expect([name, await service.stop('SIGTERM')]).toEqual([name, 0]);
      expect(service.logs).toContain('shutting down');
    }
  });
});
