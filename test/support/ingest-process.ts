import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const REPO = path.resolve(__dirname, '../..');
const CLI = path.join(REPO, 'dist/cli/main.js');

/**
 * Runs a real `crm-events-sink <command>` (the compiled CLI) as a child process, so tests can SIGKILL it the way a
 * crash or an OOM kill would.
 */
export function spawnCli(command: 'start' | 'ingest' | 'worker' | 'api', env: Record<string, string>): ChildProcess {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (scripts/test.sh does)`);
  // TEST_LOG_LEVEL=info shows the child's own log lines (stdout) and errors (stderr) in the test output. Both are
  // always piped (and drained here), so a test can read them too.
  const shown = process.env.TEST_LOG_LEVEL;
  const child = spawn(process.execPath, [CLI, command], {
    env: { ...process.env, LOG_LEVEL: shown ?? 'warn', METRICS_PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = { text: '' };
  outputs.set(child, output);
  for (const stream of [child.stdout, child.stderr]) {
    stream?.on('data', (chunk: Buffer) => {
      if (output.text.length < MAX_KEPT_OUTPUT) output.text += chunk.toString();
      if (shown) process.stderr.write(chunk);
    });
  }
  return child;
}

/** What each child printed so far (stdout and stderr), up to MAX_KEPT_OUTPUT characters. */
const outputs = new WeakMap<ChildProcess, { text: string }>();
const MAX_KEPT_OUTPUT = 1_000_000;

/**
 * Resolves once the child printed `text` (at LOG_LEVEL=info, 'Metrics listening' comes after the process catches
 * SIGTERM/SIGINT: a signal sent before then, while node still loads, ends it by the signal instead).
 */
export async function untilPrinted(child: ChildProcess, text: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!outputs.get(child)?.text.includes(text)) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited before printing "${text}"`);
    if (Date.now() > deadline) throw new Error(`did not print "${text}" within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export const spawnIngest = (env: Record<string, string>) => spawnCli('ingest', env);

/** The child processes of a test file still running: what its afterAll SIGKILLs (killAll). */
export interface TrackedChildren {
  /** Tracks `child` until it exits; returns it. */
  track<T extends ChildProcess>(child: T): T;
  /** SIGKILLs every tracked child still running. */
  killAll(): void;
}

export function trackedChildren(): TrackedChildren {
  const running = new Set<ChildProcess>();
  return {
    track(child) {
      running.add(child);
      child.once('exit', () => running.delete(child));
      return child;
    },
    killAll() {
      for (const child of running) child.kill('SIGKILL');
    },
  };
}

export function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/**
 * SIGTERM, then up to `waitMs` for the child to exit: its exit code ('running' if it had not exited by then) and the
 * milliseconds from the signal to that answer. Leaves a child still running as it is (callers SIGKILL it).
 */
export async function terminate(
  child: ChildProcess,
  waitMs: number,
): Promise<{ exit: number | null | 'running'; stopMs: number }> {
  const signalled = Date.now();
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const exit = await Promise.race([
    exited(child),
    new Promise<'running'>((res) => (timer = setTimeout(() => res('running'), waitMs))),
  ]);
  clearTimeout(timer);
  return { exit, stopMs: Date.now() - signalled };
}
