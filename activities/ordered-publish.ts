import type { Context } from '@temporalio/activity';
import type { Producer } from 'kafkajs';
import type { RefusedIds, ReplayOrdering } from '../journal/kinds';
import type { OutgoingEvent } from './replay-messages';
import type { Queryable } from '../repository/queryable';
import { untilAborted } from '../shared/timeout';
import { withRefusedIds, type ChunkProgress, type DurableProgress } from './durable-progress';
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
export interface ChunkPageSend<P> extends Pick<PageSend, 'keep'> {
  /** How the chunk heartbeats (default ctx.heartbeat): the archive pass's keeps what it last sent for its reads. */
  heartbeat?: (details: unknown) => void;
  /** Under per_key ordering, where the progress is written before each wave (on `db`, the barrier's connection). */
  durable?: { progress: DurableProgress<P>; db: Queryable };
  /** The page's ids refused, by kind (preparePage's refusedIds): kept with its progress under per_key ordering. */
  refused?: RefusedIds;
}

/**
 * publishPage for a chunk activity of a range replay, whose heartbeat is its progress: under per-key ordering the ids
 * sent so far go with it after each wave (`pageSent`), with the ids of the page refused (`pageRefused`), are written
 * durably before the next one, and a retried attempt resumes from them.
 */
export function publishChunkPage<P extends ChunkProgress>(
  producer: Producer,
  outgoing: OutgoingEvent[],
  input: { ordering?: ReplayOrdering; replayId: string },
  before: P,
  ctx: Context,
  { keep, heartbeat = (details) => ctx.heartbeat(details), durable, refused }: ChunkPageSend<P> = {},
): Promise<void> {
  // The page's refusals replace those the chunk resumed with (they are among them, unless their rows were erased).
  const { pageRefused: _resumed, ...rest } = before;
  const progress = { ...rest, ...withRefusedIds('pageRefused', refused) } as P;
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
