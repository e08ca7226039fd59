import type { Context } from '@temporalio/activity';
import { chunkShape, durableProgress, type DurableProgress } from '../../activities/durable-progress';
import type { RefusedIds } from '../../journal/kinds';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from './database';
import { baseConfig } from './env';

/** Which attempt of which activity: its workflow, run (default `<workflowId>-run`), activity id, number, schedule. */
export interface AttemptOf {
  workflowId: string;
  runId?: string;
  activityId: string;
  attempt: number;
  /** When the server scheduled it (default attempt × 1000): later for each attempt, a reset's included. */
  scheduledMs?: number;
}

/** A Context as far as durableProgress (activities/durable-progress.ts) reads it. */
export const progressContext = (at: AttemptOf, heartbeatDetails?: unknown) =>
  ({
    info: {
      workflowExecution: { workflowId: at.workflowId, runId: at.runId ?? `${at.workflowId}-run` },
      activityId: at.activityId,
      attempt: at.attempt,
      currentAttemptScheduledTimestampMs: at.scheduledMs ?? at.attempt * 1000,
      heartbeatDetails,
    },
    heartbeat: () => undefined,
    cancellationSignal: new AbortController().signal,
  }) as unknown as Context;

/** A chunk's progress as the tests of durable progress write it. */
export interface ChunkTestProgress {
  cursor: number;
  pages: number;
  pageSent?: number[];
  pageRefused?: RefusedIds;
}

/** The DurableProgress of a chunk's attempt `at`, with its heartbeat details. */
export const chunkProgressOf = (at: AttemptOf, heartbeatDetails?: unknown) =>
  durableProgress<ChunkTestProgress>(progressContext(at, heartbeatDetails), chunkShape());

/**
 * A fresh migrated database for a test file's tests, made before them and dropped after; the returned function gives
 * its pool.
 */
export function progressDatabase(label: string): () => Pool {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let pool: Pool;
  beforeAll(async () => {
    db = await createTestDatabase(baseConfig().databaseUrl, label);
    pool = createPool(db.databaseUrl, 4, createLogger('silent'));
  });
  afterAll(async () => {
    await pool?.end();
    await db?.drop();
  });
  return () => pool;
}

/**
 * Sends one key's `waves` of a chunk's page 0 as publishPage does, onto `target`: each not in `from`, at most `upTo` of
 * them, its progress written through `durable` first; stops at the first write refused (that wave is not sent).
 */
export function waveSender(db: () => Pool, waves: number[][], target: number[]) {
  return async (durable: DurableProgress<ChunkTestProgress>, from: number[], upTo: number) => {
    const sent = [...from];
    for (const wave of waves.filter((w) => !from.includes(w[0])).slice(0, upTo)) {
      try {
        await durable.write(db(), { cursor: 0, pages: 0, pageSent: [...sent] });
      } catch {
        return; // refused: the wave is not sent
      }
      target.push(...wave);
      sent.push(...wave);
    }
  };
}
