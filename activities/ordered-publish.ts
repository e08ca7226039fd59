import type { Context } from '@temporalio/activity';
import type { Producer } from 'kafkajs';
import type { ReplayOrdering } from '../journal/kinds';
import type { OutgoingEvent } from './replay-messages';
import type { Queryable } from '../repository/queryable';
import {
  dropOtherSendProgress,
  readSendProgress,
  writeSendProgress,
  type SendProgressKey,
} from '../repository/send-progress';
import { untilAborted, withTimeout } from '../shared/timeout';
import { publishMessages } from './publish';

/**
 * Sends of per-key replays still running in this process, by sender (the workflow whose activity sends: a replay's,
 * or each child's of a sharded replay): publishMessages returns when an attempt is cancelled or times out, while
 * kafkajs finishes its send in the background. The sender's next attempt waits for it, so that an older event cannot
 * land after a newer one of its key. By sender, not by replay id: the children of a sharded replay share the replay
 * id and send at the same time, and one child's send must not take the place of another's.
 */
const running = new Map<string, Promise<void>>();

export interface PageSend {
  ordering?: ReplayOrdering;
  replayId: string;
  /** Whose sends a retry waits for (default replayId): the sending workflow's id, distinct per shard child. */
  sender?: string;
  /** Ids of this page that an earlier attempt sent (per_key, from its heartbeat): not sent again. */
  sent?: number[];
  /**
   * Called after each wave (per_key) with every id of the page sent so far, and again when a wave fails: the caller
   * heartbeats them.
   */
  onWave?: (sent: number[]) => void;
  /**
   * Called before each wave (per_key) with every id of the page sent so far, the wave is sent once it has resolved:
   * the caller makes that progress durable (DurableProgress), so that a retry resumes at most one wave back.
   */
  beforeWave?: (sent: number[]) => Promise<void>;
  signal?: AbortSignal;
  /** Given each producer send, which may outlive the call (cancelled): what must wait for its end (withErasuresChecked). */
  keep?: (sending: Promise<unknown>) => void;
}

/**
 * Sends a page of replay messages. By default in one producer call. With `per_key` ordering, in waves holding at most
 * one message per key (the first of each key, then the second…), each acknowledged before the next is sent and
 * reported through `onWave`: a send that fails part way (some partitions written, others not) leaves each key with a
 * prefix of its events sent, and a retry resumes at the wave that failed, so a key may see its last event twice in a
 * row but never an older event after a newer one. Messages without a key have no order to keep: first wave.
 */
export async function publishPage(producer: Producer, outgoing: OutgoingEvent[], send: PageSend): Promise<void> {
  if (send.ordering !== 'per_key') {
    await publishMessages(
      producer,
      outgoing.map((o) => o.message),
      { signal: send.signal, track: send.keep },
    );
    return;
  }
  const sender = send.sender ?? send.replayId;
  const done = [...(send.sent ?? [])];
  const skip = new Set(done);
  for (const wave of keyWaves(outgoing.filter((o) => !skip.has(o.id)))) {
    // An attempt that ends meanwhile (cancelled, timed out) stops waiting: its retry waits in its place.
    const previous = running.get(sender);
    if (previous && send.signal) await untilAborted(previous, send.signal, () => send.signal!.reason as Error);
    else await previous;
    await send.beforeWave?.([...done]);
    try {
      await publishMessages(
        producer,
        wave.map((o) => o.message),
        {
          signal: send.signal,
          track: (sending) => {
            track(sender, sending);
            send.keep?.(sending);
          },
        },
      );
    } catch (err) {
      // Reported again as the attempt fails: its failure carries these details whatever was heartbeated meanwhile
      // (an archive read's beat of older progress), and the retry resumes at this wave.
      send.onWave?.(done);
      throw err;
    }
    done.push(...wave.map((o) => o.id));
    send.onWave?.(done);
  }
}

/** What a chunk activity's page send takes besides its events. */
export interface ChunkPageSend<P> {
  /** Given each producer send, which may outlive the call (cancelled): what must wait for its end (withErasuresChecked). */
  keep?: (sending: Promise<unknown>) => void;
  /** How the chunk heartbeats (default ctx.heartbeat): the archive pass's keeps what it last sent for its reads. */
  heartbeat?: (details: unknown) => void;
  /** Under per_key ordering, where the progress is written before each wave (on `db`, the barrier's connection). */
  durable?: { progress: DurableProgress<P>; db: Queryable };
}

/**
 * publishPage for a chunk activity of a range replay, whose heartbeat is its progress: under per-key ordering the ids
 * sent so far go with it after each wave (`pageSent`), are written durably before the next one, and a retried attempt
 * resumes from them.
 */
export function publishChunkPage<P extends { pageSent?: number[] }>(
  producer: Producer,
  outgoing: OutgoingEvent[],
  input: { ordering?: ReplayOrdering; replayId: string },
  progress: P,
  ctx: Context,
  { keep, heartbeat = (details) => ctx.heartbeat(details), durable }: ChunkPageSend<P> = {},
): Promise<void> {
  return publishPage(producer, outgoing, {
    ordering: input.ordering,
    replayId: input.replayId,
    sender: ctx.info.workflowExecution?.workflowId,
    sent: progress.pageSent,
    onWave: (pageSent) => heartbeat({ ...progress, pageSent }),
    beforeWave: durable && ((pageSent) => durable.progress.write(durable.db, { ...progress, pageSent })),
    signal: ctx.cancellationSignal,
    keep,
  });
}

/** A write or read of durable progress that Postgres does not answer in this long fails the attempt before its wave. */
export const PROGRESS_SILENCE_MS = 5000;

/**
 * The durable side of a per_key sender's progress (repository/send-progress.ts). A retry resumes from the heartbeat
 * details the server last recorded, and the SDK sends a heartbeat up to a second after it is made, or never (the
 * worker died, or was cut off from Temporal): a retry from those alone could send a key's older event after a newer
 * one (e1, e2, e1, e2; test/unit/attack47-wave-sent-on-unrecorded-progress.test.ts). Written before every wave, the
 * durable progress is at most one wave behind what was sent, so a retry sends at most that wave again: a key may see
 * its last event twice in a row, never an older one after a newer one.
 */
export interface DurableProgress<P> {
  /** Where this attempt resumes: the written progress or its heartbeat details, whichever is further on. */
  resume(db: Queryable): Promise<P | undefined>;
  /**
   * Writes the progress before a wave is sent; rejects, and the wave is not sent, when Postgres refuses or is silent,
   * or a later attempt has written (this one is stale). The attempt's first write deletes the rows of its workflow's
   * earlier activities.
   */
  write(db: Queryable, details: P): Promise<void>;
}

/**
 * DurableProgress of the activity running in `ctx`, under per_key ordering. `rank` orders its progress: of two, the
 * one ranked higher (compared element by element) is further on.
 */
export function durableProgress<P>(ctx: Context, rank: (progress: P) => number[]): DurableProgress<P> {
  const { info } = ctx;
  if (!info.workflowExecution) throw new Error(`Activity ${info.activityId} has no workflow: no progress to keep`);
  const key: SendProgressKey = {
    workflowId: info.workflowExecution.workflowId,
    runId: info.workflowExecution.runId,
    activityId: info.activityId,
    attempt: info.attempt,
  };
  const silent = (what: string) =>
    `${what} of ${key.workflowId} / activity ${key.activityId}: Postgres did not answer in ${PROGRESS_SILENCE_MS} ms`;
  let first = true;
  return {
    async resume(db) {
      const beat = info.heartbeatDetails as P | undefined;
      const written = (await withTimeout(
        readSendProgress(db, key),
        PROGRESS_SILENCE_MS,
        silent('Reading the per_key progress'),
      )) as P | undefined;
      if (written === undefined) return beat;
      if (beat === undefined) return written;
      return compareRanks(rank(written), rank(beat)) >= 0 ? written : beat;
    },
    async write(db, details) {
      const writing = (async () => {
        if (!(await writeSendProgress(db, key, details))) {
          throw new Error(
            `A later attempt than ${key.attempt} of ${key.workflowId} / activity ${key.activityId} has written its progress: this one sends nothing more`,
          );
        }
        if (first) await dropOtherSendProgress(db, key);
        first = false;
      })();
      await withTimeout(writing, PROGRESS_SILENCE_MS, silent('Writing the per_key progress'));
    },
  };
}

/** The rank of a chunk's progress: its pages, then the ids of its next page already sent. */
export const chunkRank = (progress: { pages?: number; pageSent?: number[] }): number[] => [
  progress.pages ?? 0,
  progress.pageSent?.length ?? 0,
];

function compareRanks(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** Splits messages into waves, the n-th holding the n-th message of each key (topic and key bytes), in order. */
export function keyWaves(outgoing: OutgoingEvent[]): OutgoingEvent[][] {
  const seen = new Map<string, number>();
  const waves: OutgoingEvent[][] = [];
  for (const event of outgoing) {
    const { topic, key } = event.message;
    let wave = 0;
    if (key !== null) {
      const identity = `${topic}\u0000${key.toString('base64')}`;
      wave = seen.get(identity) ?? 0;
      seen.set(identity, wave + 1);
    }
    (waves[wave] ??= []).push(event);
  }
  return waves;
}

function track(sender: string, sending: Promise<unknown>): void {
  const settled = sending.then(
    () => undefined,
    () => undefined,
  );
  running.set(sender, settled);
  void settled.then(() => {
    if (running.get(sender) === settled) running.delete(sender);
  });
}
