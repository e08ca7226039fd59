import fs from 'node:fs';
import path from 'node:path';
import { Worker } from '@temporalio/worker';
import { workflowBundle } from '../support/temporal';

/**
 * Adversarial review 16, histories of sharded replays cancelled before 0b5eaf7 (patch shard-final-counts-queried).
 *
 * Invariant: a sharded range replay recorded by earlier code on main replays under the current code without
 * nondeterminism, including one whose coordinator was cancelled (a worker restarted, or the coordinator evicted from
 * its cache, while it waits for its children or writes its audit row, replays it from its history).
 *
 * Attack: 9a6d5cb (on main from 04:25 to b8b803e at 05:55) shipped the first final-counts fix under the patch marker
 * `shard-final-counts`: a cancelled child sent a final signal (marker + SignalExternalWorkflowExecution) and the
 * cancelled coordinator waited for its children with a 60 s timer (marker + TimerStarted) before its audit activity.
 * b8b803e took both out without keeping the old patch's branch, and 0b5eaf7 added a different marker. A sharded replay
 * (2 children, 4 events/s) was recorded with the workflow code of 9a6d5cb on the time-skipping server and cancelled
 * while its children ran (test/fixtures/sharded-replay-histories-cancelled-under-9a6d5cb.json), then replayed by the
 * current bundle. Fails, all three: "Non-deprecated patch marker encountered for change shard-final-counts, but there
 * is no corresponding change command" (the coordinator's history then has a 60 s timer where the current code
 * schedules shardCounts, each child's a signal where the current code closes). A worker that replays such a
 * coordinator (one in its final wait, or writing its audit row, when the workers are deployed) fails its workflow task
 * again and again: it never reaches CANCELLED and never writes its audit row.
 *
 * The control holds: the same scenario recorded with b8b803e (no final-counts code at all) replays.
 */
const fixtures = {
  before: path.join(__dirname, '../fixtures/sharded-replay-histories-cancelled-under-9a6d5cb.json'),
  control: path.join(__dirname, '../fixtures/sharded-replay-histories-cancelled-under-b8b803e.json'),
};

it.each([
  ['before', 'replay-range-cancelled-under-9a6d5cb'],
  ['before', 'replay-range-cancelled-under-9a6d5cb-shard-0'],
  ['before', 'replay-range-cancelled-under-9a6d5cb-shard-1'],
  ['control', 'replay-range-cancelled-under-b8b803e'],
  ['control', 'replay-range-cancelled-under-b8b803e-shard-0'],
  ['control', 'replay-range-cancelled-under-b8b803e-shard-1'],
] as const)(
  '%s: replays %s, recorded cancelled',
  async (which, workflowId) => {
    const histories = JSON.parse(fs.readFileSync(fixtures[which], 'utf8')) as Record<string, unknown>;
    await expect(
      Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, histories[workflowId], workflowId),
    ).resolves.toBeUndefined();
  },
  60_000,
);
