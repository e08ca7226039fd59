import fs from 'node:fs';
import path from 'node:path';
import { Worker } from '@temporalio/worker';
import { workflowBundle } from '../support/temporal';

/**
 * Adversarial review 15, histories recorded before a814ae2 (reports without the 10-minute cap, UNCAPPED_REPORTS_PATCH).
 *
 * Invariant: a sharded range replay recorded by the code before the change replays under the current code without
 * nondeterminism — the coordinator, and children whose reports followed the 10-minute cap.
 *
 * Attack: a throttled sharded replay (2 children, 0.002 events/s, 40 events: about 5.5 hours of workflow time on the
 * time-skipping server, so the children's reports reach the 10-minute cap) recorded with the workflow code of
 * 7efc15a (the commit before a814ae2), then replayed by the current bundle. Holds: it replays. The control (run by
 * hand): with the legacy cap forced off, both children's histories fail with a nondeterminism error.
 */
const fixture = path.join(__dirname, '../fixtures/sharded-replay-histories-before-uncapped-reports.json');

it.each([
  'replay-range-before-uncapped-reports',
  'replay-range-before-uncapped-reports-shard-0',
  'replay-range-before-uncapped-reports-shard-1',
])(
  'replays %s, recorded before the reports lost their cap',
  async (workflowId) => {
    const histories = JSON.parse(fs.readFileSync(fixture, 'utf8')) as Record<string, unknown>;
    await expect(
      Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, histories[workflowId], workflowId),
    ).resolves.toBeUndefined();
  },
  60_000,
);
