import os from 'node:os';
import path from 'node:path';
import { loadConfig, type Config } from '../../shared/config';

/** The repository's root, from the compiled (dist/bench/support) or source (bench/support) location. */
export const REPO_ROOT = path.resolve(
  __dirname,
  __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..',
);

/** The local stack the benchmarks run against (the environment may point elsewhere). */
export function benchConfig(overrides: Record<string, string> = {}): Config {
  return loadConfig({ ...process.env, LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'silent', ...overrides });
}

/** A short unique suffix for databases, topics, groups and task queues, so runs never see each other's data. */
export function uniqueSuffix(): string {
  return `${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}

/** What the figures were measured on; the load average says how busy the shared machine was. */
export function machine() {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    model: cpus[0]?.model ?? 'unknown',
    totalMemoryMb: Math.round(os.totalmem() / 2 ** 20),
    node: process.version,
    platform: `${os.type()} ${os.release()}`,
    date: new Date().toISOString(),
    loadAverageAtStart: os.loadavg().map((l) => Math.round(l * 100) / 100),
  };
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls check() until it returns a truthy value; throws naming `what` after timeoutMs. */
export async function waitUntil<T>(
  check: () => Promise<T>,
  what: string,
  timeoutMs: number,
  everyMs = 100,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}
