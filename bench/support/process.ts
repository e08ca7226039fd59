import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** dist/cli/main.js, from the compiled bench (dist/bench/support). */
const CLI = path.resolve(__dirname, '../../cli/main.js');

/** Runs the compiled `crm-events-sink <command>` as a child process, as it runs in production. */
export function spawnCli(command: 'ingest' | 'worker' | 'api', env: Record<string, string>): ChildProcess {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm run bench does)`);
  // The heap limit `npm run cli` gives each part; BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" adds flags
  // (e.g. to profile the service itself; NODE_OPTIONS refuses --cpu-prof).
  const nodeArgs = ['--max-old-space-size=256', ...(process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean)];
  const child = spawn(process.execPath, [...nodeArgs, CLI, command], {
    env: { ...process.env, LOG_LEVEL: 'warn', METRICS_PORT: '0', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    if (process.env.BENCH_LOG_LEVEL) process.stderr.write(chunk);
  });
  return child;
}

/** Stops a child with SIGTERM (graceful: it commits the batch in flight) and waits for it to exit. */
export async function stopChild(child: ChildProcess, timeoutMs = 15_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(timer);
}

function statusKb(pid: number, field: 'VmRSS' | 'VmHWM'): number | undefined {
  try {
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Samples a process's resident set every 100 ms (a child by pid from /proc, or this process). stop() returns the
 * peak sampled and, for a child, the kernel's high-water mark VmHWM (which catches peaks between samples).
 */
export function sampleRss(pid?: number, everyMs = 100) {
  let peakKb = 0;
  let hwmKb = 0;
  const read = () => {
    const rss = pid === undefined ? Math.round(process.memoryUsage().rss / 1024) : statusKb(pid, 'VmRSS');
    if (rss !== undefined) peakKb = Math.max(peakKb, rss);
    if (pid !== undefined) hwmKb = Math.max(hwmKb, statusKb(pid, 'VmHWM') ?? 0);
  };
  read();
  const timer = setInterval(read, everyMs);
  return {
    stop() {
      read();
      clearInterval(timer);
      return {
        peakRssMb: Math.round(peakKb / 102.4) / 10,
        vmHwmMb: pid === undefined ? null : Math.round(hwmKb / 102.4) / 10,
      };
    },
  };
}
