import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';

const REPO = path.resolve(__dirname, '../..');

/** The time-skipping test server installed by scripts/stack.sh (or TEMPORAL_TEST_SERVER_PATH). */
export function testServerPath(): string {
  if (process.env.TEMPORAL_TEST_SERVER_PATH) return process.env.TEMPORAL_TEST_SERVER_PATH;
  return execFileSync('bash', [path.join(REPO, 'scripts/stack.sh'), 'test-server-path'], { encoding: 'utf8' }).trim();
}

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;

/** workflows/ bundled once per test file (bundling takes seconds). */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= bundleWorkflowCode({ workflowsPath: require.resolve('../../workflows'), logger: quietLogger });
  return bundle;
}

const noop = () => undefined;
const quietLogger = { trace: noop, debug: noop, info: noop, warn: noop, error: console.error, log: noop };
