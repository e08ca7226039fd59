import fs from 'node:fs';
import path from 'node:path';
import { Worker } from '@temporalio/worker';
import { workflowBundle } from '../support/temporal';

/**
 * Adversarial review 16, histories of sharded replays cancelled before 0b5eaf7 (patch shard-final-counts-queried).
 *
 * Invariant: every history recorded by a released version (code that landed at a stop: e2336a3 was the last one
 * before 0b5eaf7, b8b803e runs the same workflow code) replays under the current code, including a sharded replay
 * whose coordinator was cancelled (a worker restarted, or the coordinator evicted from its cache, while it waits for
 * its children or writes its audit row, replays it from its history). Recorded with b8b803e on the time-skipping
 * server: 2 children at 4 events/s, cancelled while they ran (test/fixtures/...-cancelled-under-b8b803e.json).
 *
 * The attack found what the compatibility promise does not cover: 9a6d5cb, on main for 90 minutes and never
 * released, had a first final-counts fix under the patch marker `shard-final-counts` (a cancelled child signalled its
 * parent, the cancelled coordinator waited with a 60 s timer); b8b803e took it out without keeping the patch's
 * branch. Its histories cannot replay under any code that does not do what it did (a patch marker cannot tell a new
 * run from an old one), so they are refused, and loudly: the worker reports a nondeterminism error naming the
 * patch (the workflow task fails and is retried; an operator terminates the run), never a run that goes on differently.
 * The current fix therefore uses a patch id of its own. docs/integrity.md §5 states the promise.
 */
const fixtures = {
  unreleased: path.join(__dirname, '../fixtures/sharded-replay-histories-cancelled-under-9a6d5cb.json'),
  released: path.join(__dirname, '../fixtures/sharded-replay-histories-cancelled-under-b8b803e.json'),
};

const replay = async (which: keyof typeof fixtures, workflowId: string) => {
  const histories = JSON.parse(fs.readFileSync(fixtures[which], 'utf8')) as Record<string, unknown>;
  return Worker.runReplayHistory({ workflowBundle: await workflowBundle() }, histories[workflowId], workflowId);
};

it.each([
  'replay-range-cancelled-under-b8b803e',
  'replay-range-cancelled-under-b8b803e-shard-0',
  'replay-range-cancelled-under-b8b803e-shard-1',
])(
  'replays %s, recorded cancelled by the released code',
  async (workflowId) => {
    await expect(replay('released', workflowId)).resolves.toBeUndefined();
  },
  60_000,
);

it.each([
  'replay-range-cancelled-under-9a6d5cb',
  'replay-range-cancelled-under-9a6d5cb-shard-0',
  'replay-range-cancelled-under-9a6d5cb-shard-1',
])(
  'refuses %s, recorded by an unreleased commit, with a nondeterminism error naming its patch',
  async (workflowId) => {
    await expect(replay('unreleased', workflowId)).rejects.toThrow(
      /[Nn]ondeterminism.*patch marker.*shard-final-counts/,
    );
  },
  60_000,
);
