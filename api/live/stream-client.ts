import type { JournalRow, StreamFilter } from '../../repository/event-journal';
import type { Metrics } from '../../shared/metrics';

/** The SSE frame of one journal row (the shape of the original crm-events stream, plus journal fields). */
function domainEventFrame(row: JournalRow): { id: number; data: Record<string, unknown> } {
  return {
    id: row.id,
    data: {
      kind: 'domain_event',
      topic: row.topic,
      partition: row.kafka_partition,
      offset: row.kafka_offset,
      id: row.id,
      tenant_id: row.tenant_id,
      replay_count: row.replay_count,
      replay_source: row.replay_source,
      received_at: row.received_at,
      payload: row.payload,
    },
  };
}

const encoded = new WeakMap<JournalRow, string>();

/**
 * A row's SSE frame as written to the socket. The feed hands the same row objects to every client, so a row is
 * encoded once however many clients take it; its length is what a client's buffers count in bytes.
 */
export function encodedFrame(row: JournalRow): string {
  let frame = encoded.get(row);
  if (frame === undefined) {
    const { id, data } = domainEventFrame(row);
    frame = `id: ${id}\ndata: ${JSON.stringify(data)}\n\n`;
    encoded.set(row, frame);
  }
  return frame;
}

/**
 * What a stream writes to: Node's HTTP/1.1 response, or its HTTP/2 compatibility response when the API serves TLS.
 * Both write, push back and tell of the end the same way; only where "gone" is read differs.
 */
export interface SseResponse {
  write(frame: string): boolean;
  on(event: 'drain' | 'close', listener: () => void): unknown;
  /** HTTP/1.1: the socket is gone. */
  readonly destroyed?: boolean;
  /** HTTP/2: the response's own stream (the compatibility response has no `destroyed`). */
  readonly stream?: { readonly destroyed: boolean };
}

function gone(res: SseResponse): boolean {
  return res.stream ? res.stream.destroyed : res.destroyed === true;
}

/**
 * One connected SSE client. Frames go straight to the socket while it keeps up; when the socket pushes back they
 * queue up to `bufferLimit` frames and `bufferBytes` bytes, and beyond that they are dropped, counted, and the client is told how many (it can
 * reconnect with Last-Event-ID to fetch them from the journal). Nothing here ever waits on the client.
 */
const RECENT_IDS = 10_000;

export class StreamClient {
  /** Highest journal id sent or queued. */
  cursor: number;
  /** Ids recently sent, so that a row committed late (below the cursor) is sent once, and a repeat is not. */
  private readonly recent = new Set<number>();
  private readonly recentOrder: number[] = [];
  private queue: string[] = [];
  /** Bytes (UTF-16 code units, a close upper bound for the frames' JSON) held in `queue`. */
  private queuedBytes = 0;
  private blocked = false;
  private dropped = 0;
  private drainWaiters: (() => void)[] = [];

  constructor(
    private readonly res: SseResponse,
    readonly filter: StreamFilter,
    private readonly bufferLimit: number,
    private readonly metrics: Metrics,
    cursor: number,
    /** Most bytes queued for a client that does not keep up: one event may be a megabyte. */
    private readonly bufferBytes = Number.POSITIVE_INFINITY,
  ) {
    this.cursor = cursor;
    res.on('drain', () => this.flush());
    res.on('close', () => this.wakeDrainWaiters());
  }

  /**
   * Resolves once everything queued has reached the socket (or the connection is gone): the catch-up from the
   * journal reads its next page only then, so a slow client paces it instead of filling its buffer and losing frames.
   */
  whenDrained(): Promise<void> {
    if ((!this.blocked && this.queue.length === 0) || gone(this.res)) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  private wakeDrainWaiters(): void {
    for (const resolve of this.drainWaiters.splice(0)) resolve();
  }

  matches(row: JournalRow): boolean {
    return (
      (this.filter.tenantId === undefined || row.tenant_id === this.filter.tenantId) &&
      (this.filter.topic === undefined || row.topic === this.filter.topic)
    );
  }

  /**
   * Sends the rows this client wants and has not had yet. Rows come in id order, except `late` ones: committed after
   * rows with higher ids (their transaction took its ids first), they arrive below the cursor and are sent unless
   * this connection already sent them.
   */
  offer(rows: JournalRow[], late = false): void {
    for (const row of rows) {
      if (!this.matches(row) || this.recent.has(row.id)) continue;
      if (row.id <= this.cursor && !late) continue;
      this.remember(row.id);
      this.cursor = Math.max(this.cursor, row.id);
      this.enqueue(encodedFrame(row));
    }
  }

  /** Whether this connection sent (or queued) the row lately: a late row already sent by the catch-up is not held. */
  hasSent(id: number): boolean {
    return this.recent.has(id);
  }

  private remember(id: number): void {
    this.recent.add(id);
    this.recentOrder.push(id);
    if (this.recentOrder.length > RECENT_IDS) this.recent.delete(this.recentOrder.shift()!);
  }

  send(data: Record<string, unknown>): void {
    this.enqueue(`data: ${JSON.stringify(data)}\n\n`);
  }

  comment(text: string): void {
    if (!this.blocked) this.res.write(`: ${text}\n\n`);
  }

  private enqueue(frame: string): void {
    if (!this.blocked) {
      this.write(frame);
      return;
    }
    if (this.queue.length < this.bufferLimit && this.queuedBytes + frame.length <= this.bufferBytes) {
      this.queue.push(frame);
      this.queuedBytes += frame.length;
    } else {
      this.dropped += 1;
      this.metrics.sseDropped.inc();
    }
  }

  private write(frame: string): void {
    this.metrics.sseMessages.inc();
    if (!this.res.write(frame)) this.blocked = true;
  }

  private flush(): void {
    this.blocked = false;
    while (this.queue.length > 0 && !this.blocked) {
      const frame = this.queue.shift()!;
      this.queuedBytes -= frame.length;
      this.write(frame);
    }
    if (!this.blocked && this.dropped > 0) {
      const notice = {
        kind: 'dropped',
        count: this.dropped,
        message: 'You fell behind; reconnect with Last-Event-ID to fetch what was dropped from the journal',
      };
      this.dropped = 0;
      this.write(`data: ${JSON.stringify(notice)}\n\n`);
    }
    if (!this.blocked && this.queue.length === 0) this.wakeDrainWaiters();
  }
}
