import { execFileSync } from 'node:child_process';
import path from 'node:path';

const STACK = path.resolve(__dirname, '../../scripts/stack.sh');

/** Runs scripts/stack.sh (up/down/kill a component) for fault tests; throws with its output on failure. */
export function stack(...args: string[]): void {
  execFileSync('bash', [STACK, ...args], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 120_000 });
}
