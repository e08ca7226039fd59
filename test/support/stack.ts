import { execFileSync } from 'node:child_process';
import path from 'node:path';

const STACK = path.resolve(__dirname, '../../scripts/stack.sh');

/** Runs scripts/stack.sh (up/down/kill a component) for fault tests; throws with its output on failure. */
export function stack(...args: string[]): void {
  execFileSync('bash', [STACK, ...args], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 120_000 });
}

/**
 * The pid of the process listening on a host:port address's port (a broker, Temporal's frontend): tests freeze it with
 * SIGSTOP (a paused VM, a GC stall) and must SIGCONT it in `finally`, in the alone group.
 */
export function listenerPid(address: string): number {
  const port = address.split(':').pop();
  const out = execFileSync('ss', ['-Hltnp', `sport = :${port}`]).toString();
  const pid = out.match(/pid=(\d+)/)?.[1];
  if (!pid) throw new Error(`no process found listening on ${address}'s port ${port}: ${out}`);
  return Number(pid);
}

/** The pid of the process listening on a broker's port (the first of `brokers`): see listenerPid. */
export function kafkaBrokerPid(brokers: string[]): number {
  return listenerPid(brokers[0]);
}
