import type { Context } from '@temporalio/activity';
import fc from 'fast-check';
import { chunkRank, durableProgress } from '../../activities/ordered-publish';
import {
  readSendProgress,
  SEND_PROGRESS_KEPT_DAYS,
  writeSendProgress,
  type SendProgressKey,
} from '../../repository/send-progress';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';

/**
 * send_progress on Postgres (sql/023, repository/send-progress.ts, activities/ordered-publish.ts durableProgress).
 *
 * Invariants: an activity's row is never overwritten by an earlier attempt than the one that last wrote it (a stale
 * attempt's write is refused, and its wave is not sent); a retry resumes from the written progress or its heartbeat,
 * whichever is further on; an attempt's first write deletes its workflow's other rows, and a few rows nobody wrote for
 * SEND_PROGRESS_KEPT_DAYS, and no other row.
 */
let db: Awaited<ReturnType<typeof createTestDatabase>>;
let pool: Pool;
let run = 0;

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'send_progress');
  pool = createPool(db.databaseUrl, 4, createLogger('silent'));
});
afterAll(async () => {
  await pool?.end();
  await db?.drop();
});

/** Run ids are unique (uuids): each workflow here has its own. */
const keyOf = (
  workflowId: string,
  activityId: string,
  attempt: number,
  runId = `${workflowId}-run`,
): SendProgressKey => ({
  workflowId,
  runId,
  activityId,
  attempt,
});

/** A Context as far as durableProgress reads it. */
const ctxOf = (key: SendProgressKey, heartbeatDetails?: unknown) =>
  ({
    info: {
      workflowExecution: { workflowId: key.workflowId, runId: key.runId },
      activityId: key.activityId,
      attempt: key.attempt,
      heartbeatDetails,
    },
  }) as unknown as Context;

it('attempts writing in any order leave the latest attempt’s progress; earlier ones are refused', async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 8 }), async (attempts) => {
      const workflowId = `wf-order-${run++}`;
      const outcomes = await Promise.all(
        attempts.map((attempt, i) => writeSendProgress(pool, keyOf(workflowId, '1', attempt), { attempt, i })),
      );
      const written = (await readSendProgress(pool, keyOf(workflowId, '1', 1))) as { attempt: number };
      expect(written.attempt).toBe(Math.max(...attempts));
      // Refused only when a later attempt than its own had written.
      outcomes.forEach((ok, i) => {
        if (attempts[i] === Math.max(...attempts)) expect(ok).toBe(true);
      });
    }),
    { numRuns: 25 },
  );
});

it('a stale attempt’s write rejects, so that its wave is not sent', async () => {
  const workflowId = 'wf-stale';
  const progress = { cursor: 0, pages: 0, pageSent: [1] };
  await durableProgress(ctxOf(keyOf(workflowId, '1', 2)), chunkRank).write(pool, progress);
  await expect(durableProgress(ctxOf(keyOf(workflowId, '1', 1)), chunkRank).write(pool, progress)).rejects.toThrow(
    'A later attempt than 1 of wf-stale / activity 1 has written its progress',
  );
  await durableProgress(ctxOf(keyOf(workflowId, '1', 3)), chunkRank).write(pool, { ...progress, pageSent: [1, 2] });
  expect(await readSendProgress(pool, keyOf(workflowId, '1', 3))).toEqual({ cursor: 0, pages: 0, pageSent: [1, 2] });
});

it('a retry resumes from the written progress or its heartbeat, whichever is further on', async () => {
  const workflowId = 'wf-resume';
  await writeSendProgress(pool, keyOf(workflowId, '7', 1), { cursor: 10, pages: 1, pageSent: [11, 12] });
  const resume = (beat: unknown) => durableProgress(ctxOf(keyOf(workflowId, '7', 2), beat), chunkRank).resume(pool);
  // Written ahead of the heartbeat the server recorded (the usual case after a cut-off or a death).
  expect(await resume({ cursor: 10, pages: 1, pageSent: [11] })).toEqual({ cursor: 10, pages: 1, pageSent: [11, 12] });
  expect(await resume({ cursor: 0, pages: 0 })).toEqual({ cursor: 10, pages: 1, pageSent: [11, 12] });
  expect(await resume(undefined)).toEqual({ cursor: 10, pages: 1, pageSent: [11, 12] });
  // The heartbeat ahead (an attempt of a worker without send_progress, during an upgrade or a rollback).
  expect(await resume({ cursor: 20, pages: 2 })).toEqual({ cursor: 20, pages: 2 });
  // Nothing written: the heartbeat, or nothing.
  const fresh = (beat: unknown) => durableProgress(ctxOf(keyOf(workflowId, '8', 1), beat), chunkRank).resume(pool);
  expect(await fresh({ cursor: 5, pages: 1 })).toEqual({ cursor: 5, pages: 1 });
  expect(await fresh(undefined)).toBeUndefined();
});

it('an attempt’s first write deletes its workflow’s earlier activities’ rows and long-unwritten rows, nothing else', async () => {
  const progress = { cursor: 0, pages: 0 };
  await writeSendProgress(pool, keyOf('wf-a', '1', 1), progress);
  await writeSendProgress(pool, keyOf('wf-a', '2', 3, 'wf-a-run-0'), progress); // a run before continue-as-new
  await writeSendProgress(pool, keyOf('wf-b', '1', 1), progress);
  await writeSendProgress(pool, keyOf('wf-old', '1', 1), progress);
  await pool.query(
    `UPDATE send_progress SET updated_at = now() - ($1 + 1) * interval '1 day' WHERE workflow_id = 'wf-old'`,
    [SEND_PROGRESS_KEPT_DAYS],
  );
  await writeSendProgress(pool, keyOf('wf-recent', '1', 1), progress);
  await pool.query(
    `UPDATE send_progress SET updated_at = now() - ($1 - 1) * interval '1 day' WHERE workflow_id = 'wf-recent'`,
    [SEND_PROGRESS_KEPT_DAYS],
  );

  const next = durableProgress<{ cursor: number; pages: number }>(ctxOf(keyOf('wf-a', '3', 1)), chunkRank);
  await next.write(pool, progress);
  const left = async () =>
    (
      await pool.query<{ w: string; a: string }>(
        `SELECT workflow_id AS w, activity_id AS a FROM send_progress
          WHERE workflow_id IN ('wf-a', 'wf-b', 'wf-old', 'wf-recent') ORDER BY 1, 2`,
      )
    ).rows.map((r) => `${r.w}/${r.a}`);
  expect(await left()).toEqual(['wf-a/3', 'wf-b/1', 'wf-recent/1']);
  // Later writes of the attempt delete nothing: a row of its workflow written meanwhile (a stale attempt of an earlier
  // activity) stays until the next activity's first write, or the week's sweep.
  await writeSendProgress(pool, keyOf('wf-a', '2', 4, 'wf-a-run-0'), progress);
  await next.write(pool, { cursor: 1, pages: 1 });
  expect(await left()).toEqual(['wf-a/2', 'wf-a/3', 'wf-b/1', 'wf-recent/1']);
});
