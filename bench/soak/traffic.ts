import type { Producer } from 'kafkajs';
import type { Produced } from './check';
import { hostileRecord, steadyRecord, type ForgeTarget, type OutRecord } from './records';

/** A bounded wait: rejects after ms so no send or request can hang the soak. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Sends one record per request and keeps what Kafka acknowledged: coordinates and exact bytes. A send that fails is
 * counted as uncertain (the broker may or may not have written it) and never checked.
 */
export class TrafficSource {
  readonly produced: Omit<Produced, 'canonical'>[] = [];
  uncertain = 0;
  private seq = 0;
  private inFlight = 0;

  constructor(
    private readonly producer: Producer,
    private readonly rand: () => number,
    private readonly hostileShare: number,
    private readonly forge: () => ForgeTarget | undefined,
  ) {}

  /** Sends ratePerSecond records a second until stop() says so; at most 50 sends in flight. */
  async run(ratePerSecond: number, stop: () => boolean): Promise<void> {
    const every = 1000 / ratePerSecond;
    const sends: Promise<void>[] = [];
    while (!stop()) {
      if (this.inFlight < 50) {
        const seq = this.seq++;
        const record =
          this.rand() < this.hostileShare ? hostileRecord(this.rand, seq, this.forge()) : steadyRecord(seq);
        sends.push(this.send(record));
        if (sends.length > 500) await Promise.all(sends.splice(0));
      }
      await sleep(every);
    }
    await Promise.all(sends);
  }

  private async send(record: OutRecord): Promise<void> {
    this.inFlight++;
    try {
      const [meta] = await within(
        this.producer.send({
          topic: record.topic,
          acks: -1,
          timeout: 10_000,
          messages: [{ key: record.key, value: record.value, headers: record.headers }],
        }),
        30_000,
        'produce',
      );
      this.produced.push({
        topic: record.topic,
        partition: meta.partition,
        offset: meta.baseOffset ?? String(meta.offset),
        kind: record.kind,
        key: record.key === null ? null : record.key.toString('base64'),
        value: record.value === null ? null : record.value.toString('base64'),
      });
    } catch {
      this.uncertain++;
    } finally {
      this.inFlight--;
    }
  }
}

/** A request the soak made to the API, and what came of it. */
export interface Operation {
  at: string;
  kind: 'single' | 'batch' | 'range' | 'dlq_retry' | 'missing_topic';
  request: string;
  status: number | 'error';
  workflowId?: string;
  eventIds?: number[];
  error?: string;
}

/** Replays and DLQ retries through the HTTP API, as an operator would make them. */
export class Operator {
  readonly operations: Operation[] = [];

  constructor(private readonly apiUrl: string) {}

  async call(kind: Operation['kind'], method: string, url: string, body?: unknown, eventIds?: number[]) {
    const op: Operation = {
      at: new Date().toISOString(),
      kind,
      request: `${method} ${url}`,
      status: 'error',
      eventIds,
    };
    this.operations.push(op);
    try {
      const res = await within(
        fetch(`${this.apiUrl}${url}`, {
          method,
          headers: body === undefined ? {} : { 'content-type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(20_000),
        }),
        25_000,
        url,
      );
      op.status = res.status;
      const json = (await res.json().catch(() => ({}))) as { workflow_id?: string; message?: string };
      op.workflowId = json.workflow_id;
      if (res.status >= 400) op.error = json.message;
    } catch (err) {
      op.error = (err as Error).message;
    }
    return op;
  }

  /** GET /replays/:id: the workflow's status and, once completed, its result. */
  async replayStatus(workflowId: string): Promise<
    | {
        workflow_status?: string;
        result?: { published?: number; unknown_ids?: number[]; refused?: Array<{ event_id?: number; id?: number }> };
      }
    | undefined
  > {
    try {
      const res = await fetch(`${this.apiUrl}/replays/${encodeURIComponent(workflowId)}`, {
        signal: AbortSignal.timeout(10_000),
      });
      return res.ok ? ((await res.json()) as never) : undefined;
    } catch {
      return undefined;
    }
  }
}
