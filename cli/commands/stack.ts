import { spawn } from 'node:child_process';
import path from 'node:path';

export const REPO_ROOT = path.resolve(
  __dirname,
  __dirname.includes(`${path.sep}dist${path.sep}`) ? '../../..' : '../..',
);

/** `stack up|down|status|...`: the Docker-free local stack, provisioned by scripts/stack.sh. */
export function stackCommand(argv: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [path.join(REPO_ROOT, 'scripts/stack.sh'), ...(argv.length ? argv : ['status'])], {
      stdio: 'inherit',
    });
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`stack ${argv.join(' ')} exited with ${code}`)),
    );
  });
}
