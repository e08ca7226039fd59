import { buildApp } from '../../api/app';
import { startApiComponent } from '../../cli/commands/api';
import { startIngestComponent } from '../../cli/commands/ingest';
import { createRuntime } from '../../cli/runtime';
import { loadConfig } from '../../shared/config';

/**
 * The service process of the api-pool benchmark: ingest and API in one process, as `npm start` runs them, with the
 * API's reads either on its own pool (`dedicated`: the product's startApiComponent, API_DATABASE_POOL_SIZE
 * connections named crm-events-sink-api) or on the pool ingest commits on (`shared`: what the product does not
 * allow, built here from the same parts); or one of them alone (`api`, `ingest`: the two processes of a deployment
 * that runs them apart, as `npm run cli -- api` and `-- ingest` do). The API listens first; ingest starts when the
 * benchmark writes a line to stdin, so that the stream clients' load is in place before ingest's clock starts.
 * Prints `ready` and `ingesting` on stdout; stops on SIGTERM.
 */
const MODES = ['dedicated', 'shared', 'api', 'ingest'] as const;

async function main(): Promise<void> {
  const mode = MODES.find((m) => m === process.argv[2]);
  if (mode === undefined) throw new Error(`usage: pool-service ${MODES.join('|')}`);
  const config = loadConfig();
  const rt = createRuntime('bench-api-pool', config);
  const stops: (() => Promise<unknown>)[] = [];
  if (mode === 'dedicated' || mode === 'api') {
    const api = await startApiComponent(rt);
    stops.push(api.stop);
  } else if (mode === 'shared') {
    const app = await buildApp({
      config,
      pool: rt.pool,
      metrics: rt.metrics,
      log: rt.log.child({ module: 'api' }),
      healthChecks: { postgres: () => rt.pool.query('SELECT 1') },
    });
    await app.listen({ host: config.api.host, port: config.api.port });
    stops.push(() => app.close());
  }
  process.stdout.write('ready\n');
  process.stdin.once('data', () => {
    if (mode === 'api') return;
    startIngestComponent(rt).then(
      (ingest) => {
        if (ingest) stops.unshift(ingest.stop); // always here: no stop signal is given to interrupt it
        process.stdout.write('ingesting\n');
      },
      (err: Error) => {
        rt.log.fatal({ err }, 'ingest did not start');
        process.exit(1);
      },
    );
  });
  process.once('SIGTERM', () => {
    void (async () => {
      for (const stop of stops) await stop().catch(() => undefined);
      await rt.pool.end();
      process.exit(0);
    })();
  });
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(1);
});
