import { execFile, execFileSync } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT } from './env';

const STACK = path.join(REPO_ROOT, 'scripts/stack.sh');

/** One line of `stack.sh status --profile cluster`. */
export interface ClusterMember {
  name: string;
  address: string;
  pid: number | undefined;
  up: boolean;
}

/** Runs `scripts/stack.sh <command> --profile cluster`; returns its stdout, throws with its stderr on failure. */
export function clusterStack(command: 'up' | 'down' | 'status', timeoutMs = 120_000): string {
  return execFileSync('bash', [STACK, command, '--profile', 'cluster'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: timeoutMs,
  });
}

/** What `stack.sh <command> <member> --profile cluster` does to one member (scripts/cluster/stack.sh). */
export type MemberCommand = 'kill' | 'stop' | 'start' | 'restart';

/**
 * One member's kill, stop, start or restart, without blocking the event loop (traffic and replays in the same test
 * keep running meanwhile). Rejects with the tail of its stderr, or after timeoutMs.
 */
export function clusterMember(command: MemberCommand, member: string, timeoutMs = 300_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      'bash',
      [STACK, command, member, '--profile', 'cluster'],
      { encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL' },
      (err, stdout, stderr) =>
        err
          ? reject(new Error(`stack.sh ${command} ${member}: ${stderr.trim().split('\n').slice(-5).join(' | ')}`))
          : resolve(stdout),
    );
  });
}

/** Every member of the cluster profile by name, as its status command reports it. */
export function clusterMembers(): Map<string, ClusterMember> {
  const members = new Map<string, ClusterMember>();
  for (const line of clusterStack('status').trim().split('\n').slice(1)) {
    const [name, address, pid, state] = line.split(/\s+/);
    members.set(name, { name, address, pid: /^\d+$/.test(pid) ? Number(pid) : undefined, up: state === 'up' });
  }
  return members;
}

/** The addresses the cluster's clients use, from its status. */
export function clusterAddresses(members: Map<string, ClusterMember>) {
  const address = (name: string) => {
    const member = members.get(name);
    if (!member?.up) throw new Error(`cluster member ${name} is not up: ${JSON.stringify(member)}`);
    return member.address;
  };
  return {
    databaseUrl: `postgres://crm_events:crm_events@${address('postgres')}/crm_events`,
    brokers: ['kafka-1', 'kafka-2', 'kafka-3'].map(address),
    temporal: address('temporal-server'),
    apis: ['api-1', 'api-2'].map((name) => `http://${address(name)}`),
  };
}
