import { MockActivityEnvironment } from '@temporalio/testing';
import type { Producer, ProducerBatch } from 'kafkajs';
import type { Pool } from 'pg';
import { createRangeActivities, type RangeChunkInput } from '../../activities/range';
import { createReplayActivities } from '../../activities/replay';
import type { ReplayRow } from '../../repository/event-journal';
import { createLogger } from '../../shared/logger';
import { createMetrics } from '../../shared/metrics';
import { answeringPool } from './answering-pool';
import { baseConfig } from './env';
import { sendProgressTable } from './send-progress-table';

/** The range and batch replay activities of one worker. */
export type ReplayActivities = ReturnType<typeof createRangeActivities> & ReturnType<typeof createReplayActivities>;

/** A key's rows of the journal on `topic`: ids 1, 2, 3, id 1 one replay hop from its original, the others originals. */
export const oneKeyRows = (topic: string): ReplayRow[] =>
  [1, 2, 3].map((id) => ({
    id,
    tenant_id: 'acme',
    topic,
    replay_count: id === 1 ? 1 : 0,
    payload_text: `{"seq": ${id}, "tenant_id": "acme"}`,
    kafka_key: 'k',
    kafka_key_bytes: Buffer.from('k'),
    kafka_headers: null,
    legacy: false,
  }));

/** A per_key range chunk over oneKeyRows, in one page. */
export const oneKeyRange = (replayId: string): RangeChunkInput => ({
  filter: { start: '2026-01-01T00:00:00Z', end: '2026-02-01T00:00:00Z', maxId: 3, includeReplays: true },
  cursor: 0,
  limit: 10,
  source: 'range',
  replayId,
  ordering: 'per_key',
});

/**
 * A pool answering the journal's reads from `rows` (a range page, or a batch's ids), send_progress's statements from
 * `table`, and the erasures' barrier with the default answer.
 */
export function journalPool(rows: ReplayRow[], table: ReturnType<typeof sendProgressTable>) {
  return answeringPool(10, (text, values) => {
    if (!text.includes('FROM event_journal WHERE')) return table.answer(text, values);
    const page = text.includes('id = ANY')
      ? rows.filter((row) => (values[0] as number[]).includes(row.id))
      : rows.filter((row) => row.id > (values.at(-2) as number)).slice(0, values.at(-1) as number);
    return { rows: page, rowCount: page.length } as never;
  });
}

/** A replayed message as a test producer sees it: the journal id it replays, its topic and key. */
export interface SentMessage {
  id: number;
  key: string;
}

/** A producer whose sends go to `send` (which may throw: the send fails), each message as a SentMessage. */
export const sendingProducer = (send: (messages: SentMessage[]) => void) =>
  ({
    sendBatch: async ({ topicMessages }: ProducerBatch) => {
      send(
        topicMessages!.flatMap((t) =>
          t.messages.map((m) => ({
            id: (JSON.parse(String(m.value)) as { _replayed_from_event_id: number })._replayed_from_event_id,
            key: `${t.topic}/${String(m.key)}`,
          })),
        ),
      );
      return [];
    },
  }) as unknown as Producer;

/** An attempt of a replay activity: which, where it resumes, and its worker (its pool, producer and config's env). */
export interface ReplayAttempt {
  name: string;
  attempt: number;
  heartbeatDetails: unknown;
  pool: Pool;
  producer: Producer;
  config: Record<string, string>;
  /** Each heartbeat of the attempt as it is made (default: none looked at). */
  onBeat?: (details: unknown) => void;
}

/**
 * Runs attempt `attempt` of activity 1 of workflow `name` (scheduled at attempt × 1000 ms) on a worker of its own:
 * its result, or its error's message, and the details it last heartbeated.
 */
export async function replayAttempt<R>(at: ReplayAttempt, run: (activities: ReplayActivities) => Promise<R>) {
  const deps = {
    pool: at.pool,
    producer: at.producer,
    metrics: createMetrics(),
    log: createLogger('silent'),
    config: baseConfig(at.config),
    lineageKey: Buffer.from(at.name),
    archive: undefined as never,
  };
  const activities = { ...createRangeActivities(deps), ...createReplayActivities(deps) };
  const env = new MockActivityEnvironment({
    workflowExecution: { workflowId: at.name, runId: `${at.name}-run` },
    activityId: '1',
    attempt: at.attempt,
    currentAttemptScheduledTimestampMs: at.attempt * 1000,
    heartbeatDetails: at.heartbeatDetails,
  });
  const beats: unknown[] = [];
  env.on('heartbeat', (details: unknown) => {
    beats.push(details);
    at.onBeat?.(details);
  });
  const outcome = await env
    .run(() => run(activities))
    .then(
      (result) => result as R,
      (err: Error) => err.message,
    );
  return { outcome, lastBeat: beats.at(-1) };
}

/**
 * Two attempts of one per_key replay activity (`run`) across a rolling deploy that changes REPLAY_MAX_HOPS: attempt 1
 * on a worker with `maxHops[0]`, whose send holding id 3 fails (a broker lost, nothing written), then its retry on a
 * worker with `maxHops[1]`, resumed from the details attempt 1's failure carried. The journal (a range page or a
 * batch's ids) is `rows`, send_progress is in memory, the erasures' barrier gets the default answer. Gives attempt 1's
 * outcome (its error's message), the ids the topic holds in order, the retry's result and send_progress's writes.
 */
export async function redeployedAttempts<R>(
  name: string,
  rows: ReplayRow[],
  maxHops: [number, number],
  run: (activities: ReplayActivities) => Promise<R>,
) {
  const table = sendProgressTable();
  const pool = journalPool(rows, table);
  const topic: number[] = [];
  let attempt = 0;
  const producer = sendingProducer((messages) => {
    const ids = messages.map((m) => m.id);
    if (attempt === 1 && ids.includes(3)) throw new Error('broker lost (simulated)');
    topic.push(...ids);
  });
  const attemptOn = (n: number, heartbeatDetails: unknown) => {
    attempt = n;
    const config = { REPLAY_MAX_HOPS: String(maxHops[n - 1]), REPLAY_TARGET_TOPICS: rows[0].topic };
    return replayAttempt({ name, attempt: n, heartbeatDetails, pool, producer, config }, run);
  };
  const first = await attemptOn(1, undefined);
  const second = await attemptOn(2, first.lastBeat);
  return { first: first.outcome, topic, second: second.outcome as R, written: table.writes };
}
