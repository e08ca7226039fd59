import type { LagMonitor } from '../../ingest/lag-monitor';
import { loadConfig } from '../../shared/config';
import { endPool } from '../../shared/db';
import { ensureTopics } from '../../shared/kafka';
import { prepareDatabase } from '../../lifecycle/prepare';
import { certFileOf, loadTlsPair, SELF_SIGNED_NAMES } from '../../shared/tls';
import { startMetricsServer, stopMetricsServer } from '../../shared/metrics-server';
import { createLogger } from '../../shared/logger';
import { withTimeout } from '../../shared/timeout';
import { createRuntime, untilShutdown, watchStopSignals, type StopSignal, type Stopper } from '../runtime';
import { stackCommand } from './stack';

type Component = 'ingest' | 'worker' | 'api';

/**
 * Runs one or more components in this process until SIGTERM/SIGINT. `start` runs them all after bringing the
 * local stack up (with --stack) and migrating, then prints where everything is. Each component's code is loaded only
 * when it runs: the Temporal SDK and Fastify would add some 60 MB to an ingest-only process.
 */
export async function serve(components: Component[], options: { stack?: boolean; prepare?: boolean } = {}) {
  const config = loadConfig();
  const signals = watchStopSignals(config.shutdownTimeoutMs);
  // The API's certificate first (a self-signed one is made now): a pair that cannot be had stops the start at once.
  const tls = components.includes('api') && config.api.tls ? await loadTlsPair(config.api.tls) : undefined;
  if (options.stack && (await stackUpOrInterrupted(signals, config.logLevel)) === 'interrupted') return;
  const rt = createRuntime(components.length > 1 ? 'sink' : components[0], config);
  if (options.prepare) {
    await prepareDatabase(config.databaseUrl, rt.log, config.journal);
    const { topics, topicPartitions, topicReplicationFactor } = config.kafka;
    await ensureTopics(rt.kafka, topics, topicPartitions, topicReplicationFactor);
  }
  const intake: Stopper[] = [];
  const rest: Stopper[] = [];
  if (components.includes('ingest') || components.includes('worker')) {
    // Every series of the process on :9105 (the API's /metrics serves only the API's own, none labelled by tenant).
    const server = await startMetricsServer(rt.metrics.registry, config.metrics.host, config.metrics.port, rt.log);
    rest.push({ name: 'metrics-server', stop: () => stopMetricsServer(server) });
  }
  // One lag monitor per process, wherever ingest or the API runs: it reads the group's offsets from Kafka on a timer,
  // so an API-only process sees stalls too (its /health names them; :9105 exports the gauges with ingest's metrics).
  let lagMonitor: LagMonitor | undefined;
  if (components.includes('ingest') || components.includes('api')) {
    const { startLagMonitor } = await import('../../ingest/lag-monitor.js');
    lagMonitor = startLagMonitor({
      kafka: rt.kafka,
      groupId: config.kafka.groupId,
      topics: config.kafka.topics,
      fromBeginning: config.kafka.fromBeginning,
      metrics: rt.metrics,
      log: rt.log.child({ module: 'lag-monitor' }),
      intervalMs: config.ingest.lagIntervalMs,
      stallSeconds: config.ingest.stallSeconds,
    });
    rest.push({ name: 'lag-monitor', stop: lagMonitor.stop });
  }
  // A stop signal during the start: ingest gives up a start that could outlast SHUTDOWN_TIMEOUT (waiting to commit its
  // group's start), and nothing else is started; the stop then runs at once.
  const stopRequested = new AbortController();
  void signals.received.then(() => stopRequested.abort());
  let interrupted = false;
  if (components.includes('ingest')) {
    const { startIngestComponent } = await import('./ingest.js');
    const ingest = await startIngestComponent(rt, lagMonitor, stopRequested.signal);
    if (ingest) intake.push({ name: 'ingest', stop: ingest.stop });
    interrupted = !ingest;
  }
  if (components.includes('worker') && !interrupted) {
    const { startWorkerComponent } = await import('./worker.js');
    const worker = await startWorkerComponent(rt);
    intake.push({ name: 'worker', stop: worker.stop });
  }
  if (components.includes('api') && !interrupted) {
    const { startApiComponent } = await import('./api.js');
    if (tls?.generated)
      rt.log.info({ cert: certFileOf(config.api.tls!) }, 'Made a self-signed certificate for the API');
    const api = await startApiComponent(rt, lagMonitor, tls);
    intake.unshift({ name: 'api', stop: api.stop });
  }
  if (options.prepare && !interrupted) printUrls(config);
  await untilShutdown(
    rt.log,
    [...intake, ...rest, { name: 'postgres-pool', stop: () => endPool(rt.pool, rt.log) }],
    config.shutdownTimeoutMs,
    signals,
  );
}

/** How long a failed `stack up` waits for the stop signal that may have interrupted it. */
const INTERRUPT_GRACE_MS = 1000;

/**
 * Brings the local stack up. Ctrl-C reaches the whole foreground process group, so it interrupts scripts/stack.sh,
 * this process's child, as well as this process: a `stack up` that fails then is the stop the operator asked for,
 * not a failed start (nothing of the service runs yet). The signal and the child's exit come in either order.
 */
async function stackUpOrInterrupted(signals: StopSignal, logLevel: string): Promise<'up' | 'interrupted'> {
  const failed = await stackCommand(['up']).then(
    () => undefined,
    (err: Error) => err,
  );
  if (!failed) return 'up';
  const stop = await withTimeout(signals.received, INTERRUPT_GRACE_MS, 'no stop signal').catch(() => undefined);
  if (!stop) throw failed;
  signals.claim();
  createLogger(logLevel, 'sink').info({ signal: stop.signal }, 'Stopped while bringing the local stack up');
  return 'interrupted';
}

function authLine(config: ReturnType<typeof loadConfig>): string {
  if (config.api.authMode === 'jwt') return 'on (bearer JWT; mint one: npm run cli -- token --role operator)';
  if (config.api.openOnPurpose) return 'OFF on purpose (AUTH_MODE=none): every caller who can reach it is an admin';
  return 'off: listening on this host only (set AUTH_JWT_SECRET to listen beyond it)';
}

/** Whether the API serves TLS and HTTP/2, and how a client trusts its certificate. */
function tlsLines(config: ReturnType<typeof loadConfig>, apiUrl: string): string[] {
  const tls = config.api.tls;
  if (!tls) return ['off: plain HTTP/1.1 (HTTPS + HTTP/2: API_TLS=self-signed, or API_TLS_CERT and API_TLS_KEY)'];
  const cert = certFileOf(tls);
  const origin = tls.source === 'self-signed' ? `self-signed for ${SELF_SIGNED_NAMES.join(', ')}` : 'API_TLS_CERT';
  return [
    'on: HTTPS, HTTP/2 negotiated by ALPN (HTTP/1.1 for clients without it)',
    `certificate ${cert} (${origin})`,
    `CLI: CRM_EVENTS_API_URL=${apiUrl} NODE_EXTRA_CA_CERTS=${cert} npm run cli -- dlq list`,
  ];
}

function printUrls(config: ReturnType<typeof loadConfig>) {
  const db = new URL(config.databaseUrl);
  db.password = '***';
  const api = `${config.api.tls ? 'https' : 'http'}://${config.api.host}:${config.api.port}`;
  const [tlsState, ...tlsMore] = tlsLines(config, api);
  const lines = [
    '',
    'crm-events-sink is running:',
    `  API            ${api}   (docs: /docs, health: /health, console: /console)`,
    `  Metrics        http://${config.metrics.host}:${config.metrics.port}/metrics`,
    `  Auth           ${authLine(config)}`,
    `  TLS / HTTP/2   ${tlsState}`,
    ...tlsMore.map((line) => `                 ${line}`),
    `  Temporal UI    ${config.temporal.uiUrl}`,
    `  Postgres       ${db.toString()}`,
    `  Kafka          ${config.kafka.brokers.join(',')}  topics: ${config.kafka.topics.join(', ')}`,
    'Stop with Ctrl-C (the local stack keeps running; `npm run cli -- stack down` stops it).',
    '',
  ];
  process.stderr.write(lines.join('\n'));
}
