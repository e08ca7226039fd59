import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { stopChild } from '../support/process';

const REPO = path.resolve(__dirname, '../../..');
const CLI = path.join(REPO, 'dist/cli/main.js');
const MARKER = '.soak-stack';

/** Ports and directory of the soak's own stack instance; never the shared default one. */
export interface InstanceOptions {
  stackDir: string;
  pgPort: number;
  kafkaPort: number;
  temporalPort: number;
  apiPort: number;
  metricsPort: number;
}

export type Component = 'postgres' | 'kafka' | 'temporal';
/**
 * What the soak runs: `stack.sh up` alone would also start the archive's S3 server, on the default instance's port
 * (taking it over), and the soak does not use it.
 */
export const SOAK_COMPONENTS: Component[] = ['postgres', 'kafka', 'temporal'];
export type Service = 'ingest' | 'worker' | 'api';

/** scripts/stack.sh on the soak's STACK_DIR and ports, reusing the default instance's downloads. */
function stackEnv(o: InstanceOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of ['DATABASE_URL', 'KAFKA_BROKERS', 'TEMPORAL_ADDRESS']) delete env[k];
  return {
    ...env,
    STACK_DIR: o.stackDir,
    STACK_CACHE_DIR: process.env.STACK_CACHE_DIR ?? path.join(REPO, '.stack'),
    STACK_PG_PORT: String(o.pgPort),
    STACK_KAFKA_PORT: String(o.kafkaPort),
    STACK_KAFKA_CONTROLLER_PORT: String(o.kafkaPort + 1),
    STACK_TEMPORAL_PORT: String(o.temporalPort),
    STACK_TEMPORAL_UI_PORT: String(o.temporalPort + 1000),
  };
}

/** Runs `scripts/stack.sh ARGS` for the soak's instance; rejects with its stderr tail, or after timeoutMs. */
export function stack(o: InstanceOptions, args: string[], timeoutMs = 180_000): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      'bash',
      [path.join(REPO, 'scripts/stack.sh'), ...args],
      { env: stackEnv(o), timeout: timeoutMs, killSignal: 'SIGKILL' },
      (err, _out, stderr) =>
        err
          ? reject(new Error(`stack.sh ${args.join(' ')}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`))
          : resolve(),
    );
  });
}

/** The application's environment pointing at the soak's instance. */
export function serviceEnv(o: InstanceOptions): Record<string, string> {
  return {
    DATABASE_URL: `postgres://crm_events:crm_events@127.0.0.1:${o.pgPort}/crm_events`,
    KAFKA_BROKERS: `127.0.0.1:${o.kafkaPort}`,
    TEMPORAL_ADDRESS: `127.0.0.1:${o.temporalPort}`,
    TEMPORAL_UI_URL: `http://127.0.0.1:${o.temporalPort + 1000}`,
    API_HOST: '127.0.0.1',
    API_PORT: String(o.apiPort),
    METRICS_HOST: '127.0.0.1',
    API_REPLAY_RATE_LIMIT_PER_MINUTE: '100000',
    KAFKA_SESSION_TIMEOUT_MS: '10000',
    DLQ_RETRY_INTERVAL: '30s',
    DLQ_RETRY_BASE_DELAY: '5s',
    LOG_LEVEL: 'info',
  };
}

/** Starts from nothing: stops a previous soak instance in stackDir and deletes its data (only a soak's own dir). */
export async function freshInstance(o: InstanceOptions): Promise<void> {
  const entries = fs.existsSync(o.stackDir) ? fs.readdirSync(o.stackDir) : [];
  if (entries.length > 0 && !entries.includes(MARKER)) {
    throw new Error(`${o.stackDir} is not empty and has no ${MARKER}: not a soak stack, refusing to wipe it`);
  }
  if (entries.length > 0) await stack(o, ['down']);
  for (const e of entries) if (e !== MARKER) fs.rmSync(path.join(o.stackDir, e), { recursive: true, force: true });
  fs.mkdirSync(o.stackDir, { recursive: true });
  fs.writeFileSync(path.join(o.stackDir, MARKER), 'scratch stack of npm run soak; wiped at each run\n');
  await stack(o, ['up', ...SOAK_COMPONENTS]);
}

/** Runs `node dist/cli/main.js <cmd>` once, to completion (migrate). */
export function runCli(o: InstanceOptions, cmd: string, timeoutMs = 120_000): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [CLI, cmd],
      { env: { ...process.env, ...serviceEnv(o) }, timeout: timeoutMs },
      (err, out, stderr) =>
        err ? reject(new Error(`${cmd}: ${(stderr || out).trim().split('\n').slice(-3).join(' | ')}`)) : resolve(),
    );
  });
}

/** An event in a service's life the report lists (starts, kills, unexpected exits). */
export interface ServiceEvent {
  at: string;
  service: Service;
  event: 'started' | 'killed' | 'exited';
  detail?: string;
}

/** One process of a service, from its start to its end (undefined while it runs). */
export interface ServiceLife {
  service: Service;
  pid: number;
  startedAt: number;
  endedAt?: number;
  /** killed: a planned SIGKILL; exited: it ended on its own; stopped: the soak's final graceful stop. */
  end?: 'killed' | 'exited' | 'stopped';
}

/**
 * The service's three parts as separate processes, each restarted if it exits on its own (after 2 s): a fault must
 * not end the soak, but every unexpected exit is recorded.
 */
export class Services {
  private readonly children = new Map<Service, ChildProcess>();
  private readonly expectedExit = new Set<ChildProcess>();
  private stopping = false;
  readonly events: ServiceEvent[] = [];
  readonly lives: ServiceLife[] = [];

  constructor(private readonly o: InstanceOptions) {
    if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm run soak does)`);
  }

  start(service: Service): void {
    const metricsPort = { ingest: this.o.metricsPort, worker: this.o.metricsPort + 2, api: this.o.metricsPort + 3 }[
      service
    ];
    const log = fs.openSync(path.join(this.o.stackDir, 'logs', `soak-${service}.log`), 'a');
    const child = spawn(process.execPath, ['--max-old-space-size=256', CLI, service], {
      env: { ...process.env, ...serviceEnv(this.o), METRICS_PORT: String(metricsPort) },
      stdio: ['ignore', log, log],
    });
    fs.closeSync(log);
    this.children.set(service, child);
    this.record(service, 'started', `pid ${child.pid}`);
    const life: ServiceLife = { service, pid: child.pid ?? -1, startedAt: Date.now() };
    this.lives.push(life);
    child.once('exit', (code, signal) => {
      life.endedAt = Date.now();
      life.end = this.expectedExit.has(child) ? 'killed' : this.stopping ? 'stopped' : 'exited';
      if (this.expectedExit.delete(child) || this.stopping) return;
      this.record(service, 'exited', `pid ${child.pid}: code ${code} signal ${signal}`);
      setTimeout(() => {
        if (!this.stopping && this.children.get(service) === child) this.start(service);
      }, 2000).unref();
    });
  }

  /** The pid of the service's process if it is running. */
  pidOf(service: Service): number | undefined {
    const child = this.children.get(service);
    return child && child.exitCode === null && child.signalCode === null ? child.pid : undefined;
  }

  /** SIGKILL, as a crash; resolves once the process is gone. */
  async kill(service: Service): Promise<void> {
    const child = this.children.get(service);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    this.expectedExit.add(child);
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await gone;
    this.record(service, 'killed', `pid ${child.pid}`);
  }

  /** Graceful stop of everything, SIGKILL after timeoutMs. */
  async stopAll(timeoutMs = 40_000): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.children.values()].map((child) => stopChild(child, timeoutMs)));
  }

  private record(service: Service, event: ServiceEvent['event'], detail?: string): void {
    this.events.push({ at: new Date().toISOString(), service, event, detail });
  }
}
