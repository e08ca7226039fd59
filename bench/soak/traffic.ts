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
    /** The records that are not hostile (the cluster fault suite sends its own tenant's). */
    private readonly steady: (seq: number) => OutRecord = steadyRecord,
  ) {}

  /** Sends ratePerSecond records a second until stop() says so; at most 50 sends in flight. */
  async run(ratePerSecond: number, stop: () => boolean): Promise<void> {
    const every = 1000 / ratePerSecond;
    const sends: Promise<void>[] = [];
    while (!stop()) {
      if (this.inFlight < 50) {
        const seq = this.seq++;
        const record = this.rand() < this.hostileShare ? hostileRecord(this.rand, seq, this.forge()) : this.steady(seq);
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
        ackedAt: Date.now(),
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
  kind: 'single' | 'batch' | 'range' | 'dlq_retry' | 'missing_topic' | 'target_deleted';
  request: string;
  status: number | 'error';
  workflowId?: string;
  eventIds?: number[];
  error?: string;
  /** A single replay requested right after its topic was deleted and re-created (the topic_recreate fault). */
  afterRecreate?: boolean;
}

/** Kinds of operation whose workflow must complete and whose events must then be journaled once each. */
export const JOURNALED_KINDS: ReadonlySet<Operation['kind']> = new Set(['single', 'batch', 'range']);

export interface ReplayStatus {
  workflow_status?: string;
  result?: { published?: number; unknown_ids?: number[]; refused?: Array<{ event_id?: number; id?: number }> };
  progress?: { published?: number } | null;
  audit?: { status?: string; error?: string | null; finished_at?: string | null } | null;
}

/**
 * Holds the operations loop while a fault needs no replay in flight: run() waits while closed, close() waits for the
 * operation under way.
 */
export class Gate {
  private closed?: Promise<void>;
  private release?: () => void;
  private busy: Promise<unknown> = Promise.resolve();

  async run<T>(fn: () => Promise<T>): Promise<T> {
    while (this.closed) await this.closed;
    const p = fn();
    this.busy = p.catch(() => undefined);
    return p;
  }

  async close(): Promise<void> {
    this.closed ??= new Promise((resolve) => (this.release = resolve));
    await this.busy;
  }

  open(): void {
    const release = this.release;
    this.closed = this.release = undefined;
    release?.();
  }
}

/** Replays and DLQ retries through the HTTP API, as an operator would make them. */
export class Operator {
  readonly operations: Operation[] = [];
  private readonly ended = new Set<string>();

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
          // X-Requested-By: what the API asks of a client that is not a browser form (api/plugins/browser-guard.ts).
          headers: { 'x-requested-by': 'soak', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
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

  /** Waits until every workflow of JOURNALED_KINDS started so far has ended (not RUNNING); false after ms. */
  async waitIdle(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    for (;;) {
      const open = this.operations.filter(
        (op) => op.workflowId && JOURNALED_KINDS.has(op.kind) && !this.ended.has(op.workflowId),
      );
      for (const op of open) {
        const st = await this.replayStatus(op.workflowId!);
        if (st?.workflow_status && st.workflow_status !== 'RUNNING') this.ended.add(op.workflowId!);
      }
      if (open.every((op) => this.ended.has(op.workflowId!))) return true;
      if (Date.now() > deadline) return false;
      await sleep(500);
    }
  }

  /** POST /replays/:id/cancel, without recording it as an operation. */
  async cancel(workflowId: string): Promise<number | 'error'> {
    try {
      const res = await fetch(`${this.apiUrl}/replays/${encodeURIComponent(workflowId)}/cancel`, {
        method: 'POST',
        headers: { 'x-requested-by': 'soak' },
        signal: AbortSignal.timeout(10_000),
      });
      return res.status;
    } catch {
      return 'error';
    }
  }

  /** GET /replays/:id: the workflow's status, audit row, progress while running and, once completed, its result. */
  async replayStatus(workflowId: string): Promise<ReplayStatus | undefined> {
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
