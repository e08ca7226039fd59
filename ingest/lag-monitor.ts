import { disconnectAdmin } from '../shared/kafka';
import type { Logger } from '../shared/logger';
import type { Metrics } from '../shared/metrics';
import { stopWait } from '../shared/stop-clock';
import { settleWithin, withTimeout } from '../shared/timeout';

/**
 * Invariant 4 (docs/integrity.md): lag and liveness are watched from outside the data path. A timer reads the consumer
 * group's committed offsets and the high watermarks through the Kafka admin API, as Burrow and kafka-lag-exporter do,
 * so the lag gauge exists for every partition of the subscribed topics even when no batch ever completes, and a
 * partition whose committed offset stops moving while it has lag is reported as stalled. It reads only what the
 * broker stores for the group, so it works the same in the ingest process and in an API-only process.
 */

/** The part of the kafkajs admin client the monitor uses; kafkajs' Admin satisfies it, and tests pass fakes. */
export interface LagAdmin {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  fetchOffsets(options: {
    groupId: string;
    topics: string[];
  }): Promise<{ topic: string; partitions: { partition: number; offset: string }[] }[]>;
  fetchTopicOffsets(topic: string): Promise<{ partition: number; low: string; high: string }[]>;
}

export interface LagMonitorOptions {
  kafka: { admin(): LagAdmin };
  groupId: string;
  topics: string[];
  metrics: Pick<Metrics, 'consumerLag' | 'committedOffset' | 'partitionStalled'>;
  log: Logger;
  /** Time between two polls (default 5000). */
  intervalMs?: number;
  /** Lag with no progress for this long is a stall (INGEST_STALL_SECONDS, default 60). */
  stallSeconds?: number;
  /** One poll gives up after this long (default: the interval, at least 2 s). */
  pollTimeoutMs?: number;
  /** Where a group with no committed offset starts (KAFKA_FROM_BEGINNING, default true). */
  fromBeginning?: boolean;
  now?: () => number;
}

/** A partition with lag whose committed offset has not moved since `since`. */
export interface StalledPartition {
  topic: string;
  partition: number;
  lag: number;
  since: Date;
}

export interface LagMonitor {
  /** The partitions stalled as of the last poll (what the gauge shows). */
  stalled(): StalledPartition[];
  /** When the last poll succeeded (undefined before the first): how current `stalled()` is. */
  lastRead(): Date | undefined;
  /** A /health check: rejects naming the stalled partitions, or saying that lag could not be read for a while. */
  check(): Promise<void>;
  /** Stops polling and closes the admin connection; resolves within about a second. */
  stop(): Promise<void>;
}

/** One partition as read from Kafka: where the group resumes, and how far behind the end that is. */
export interface PartitionReading {
  topic: string;
  partition: number;
  position: number;
  lag: number;
}

const ERROR_LOG_EVERY_MS = 60_000;
const STOP_WAIT_MS = 1000;

/** Starts polling at once and then every intervalMs; never throws, never keeps the process alive on its own. */
export function startLagMonitor(opts: LagMonitorOptions): LagMonitor {
  const { kafka, groupId, topics, metrics, log } = opts;
  const intervalMs = opts.intervalMs ?? 5000;
  const stallMs = (opts.stallSeconds ?? 60) * 1000;
  const pollTimeoutMs = opts.pollTimeoutMs ?? Math.max(intervalMs, 2000);
  const now = opts.now ?? Date.now;
  const tracker = new StallTracker(stallMs);
  const errors = rateLimitedErrors(log, now);
  let admin: LagAdmin | undefined;
  let connected: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let inFlight: Promise<void> | undefined;
  let stopped = false;
  const startedAt = now();
  let lastSuccess: number | undefined;
  let lastError: string | undefined;
  let stalled: StalledPartition[] = [];

  const read = async (): Promise<PartitionReading[]> => {
    admin ??= kafka.admin();
    connected ??= admin.connect();
    await connected;
    const [committed, ...ends] = await Promise.all([
      admin.fetchOffsets({ groupId, topics }),
      ...topics.map((topic) => admin!.fetchTopicOffsets(topic)),
    ]);
    return readings(topics, committed, ends, opts.fromBeginning ?? true);
  };

  const poll = async () => {
    try {
      const result = await withTimeout(read(), pollTimeoutMs, `no answer from Kafka within ${pollTimeoutMs} ms`);
      if (stopped) return;
      const at = now();
      for (const r of result) tracker.update(r, at);
      publish(result, tracker.stalled(at), at);
      if (lastError !== undefined) log.info({ group: groupId }, 'Consumer lag readable again');
      lastSuccess = at;
      lastError = undefined;
    } catch (err) {
      lastError = (err as Error).message;
      errors.report(err as Error, groupId);
      // A connection that timed out may never answer: drop it, the next poll connects afresh.
      const old = admin;
      admin = undefined;
      connected = undefined;
      void old?.disconnect().catch(() => undefined);
    }
  };

  const publish = (result: PartitionReading[], current: StalledPartition[], at: number) => {
    const stalledKeys = new Set(current.map(partitionKey));
    const before = new Set(stalled.map(partitionKey));
    for (const r of result) {
      const labels = { topic: r.topic, partition: String(r.partition) };
      metrics.consumerLag.set(labels, r.lag);
      metrics.committedOffset.set(labels, r.position);
      metrics.partitionStalled.set(labels, stalledKeys.has(partitionKey(r)) ? 1 : 0);
    }
    // Log the transitions, not every poll.
    for (const s of current) {
      if (!before.has(partitionKey(s))) log.warn({ ...s, group: groupId }, describeStall(s, at));
    }
    for (const key of before) {
      if (!stalledKeys.has(key)) log.info({ partition: key, group: groupId }, `Partition ${key} is moving again`);
    }
    stalled = current;
  };

  const loop = () => {
    if (stopped) return;
    inFlight = poll().finally(() => {
      inFlight = undefined;
      if (!stopped) timer = setTimeout(loop, intervalMs).unref();
    });
  };
  loop();

  return {
    stalled: () => [...stalled],
    lastRead: () => (lastSuccess === undefined ? undefined : new Date(lastSuccess)),
    async check() {
      const at = now();
      if (stalled.length > 0) throw new Error(stalled.map((s) => describeStall(s, at)).join('; '));
      const fresh = lastSuccess ?? startedAt;
      if (at - fresh > Math.max(stallMs, 3 * intervalMs)) {
        const age = Math.round((at - fresh) / 1000);
        throw new Error(`consumer lag unknown: not read from Kafka for ${age} s (${lastError ?? 'no answer yet'})`);
      }
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await settleWithin(inFlight ?? Promise.resolve(), stopWait(STOP_WAIT_MS));
      if (admin) await disconnectAdmin(admin, STOP_WAIT_MS, log);
    },
  };
}

/**
 * Decides stalls from successive readings: a partition is stalled when it has had lag, with its position unchanged,
 * for at least stallMs. The clock restarts whenever the position moves or the lag drops to 0, so a partition that was
 * idle for an hour is not stalled the moment a new record arrives.
 */
export class StallTracker {
  private readonly partitions = new Map<string, PartitionReading & { since: number }>();

  constructor(private readonly stallMs: number) {}

  update(reading: PartitionReading, at: number): void {
    const key = partitionKey(reading);
    const before = this.partitions.get(key);
    const moving = !before || before.position !== reading.position || reading.lag === 0;
    this.partitions.set(key, { ...reading, since: moving ? at : before.since });
  }

  stalled(at: number): StalledPartition[] {
    return [...this.partitions.values()]
      .filter((p) => p.lag > 0 && at - p.since >= this.stallMs)
      .map(({ topic, partition, lag, since }) => ({ topic, partition, lag, since: new Date(since) }));
  }
}

/**
 * Joins the group's committed offsets with the watermarks. Where the group has committed nothing it resumes at the
 * low watermark (from the beginning) or the high one; a committed offset below the low watermark (retention deleted
 * those records) resumes at the low one, and one past the high watermark (topic re-created) has no lag. The high one
 * can only be read as "caught up", so ingest commits it before its consumer joins (ingest/group-start.ts): the
 * reading stands for what the consumer does only until then.
 */
export function readings(
  topics: string[],
  committed: { topic: string; partitions: { partition: number; offset: string }[] }[],
  ends: { partition: number; low: string; high: string }[][],
  fromBeginning: boolean,
): PartitionReading[] {
  return topics.flatMap((topic, i) => {
    const offsets = new Map(committed.find((c) => c.topic === topic)?.partitions.map((p) => [p.partition, p.offset]));
    const byPartition = [...ends[i]].sort((a, b) => a.partition - b.partition);
    return byPartition.map(({ partition, low, high }) => {
      const [lo, hi] = [BigInt(low), BigInt(high)];
      const raw = BigInt(offsets.get(partition) ?? '-1');
      const start = raw < 0n ? (fromBeginning ? lo : hi) : raw < lo ? lo : raw;
      const lag = hi > start ? hi - start : 0n;
      return { topic, partition, position: Number(start), lag: Number(lag) };
    });
  });
}

/** "partition apexflow.leads.created/2 stalled for 75 s with lag 12" */
export function describeStall(s: StalledPartition, at: number): string {
  const seconds = Math.round((at - s.since.getTime()) / 1000);
  return `partition ${s.topic}/${s.partition} stalled for ${seconds} s with lag ${s.lag}`;
}

/** "apexflow.leads.created/2": how a partition is named in logs, /health and sets. */
export const partitionKey = (p: { topic: string; partition: number }) => `${p.topic}/${p.partition}`;

/** The first failure at once, then at most one line a minute saying how many were left out. */
function rateLimitedErrors(log: Logger, now: () => number) {
  let lastLogged = -Infinity;
  let suppressed = 0;
  return {
    report(err: Error, group: string) {
      if (now() - lastLogged < ERROR_LOG_EVERY_MS) {
        suppressed += 1;
        return;
      }
      log.warn({ err: err.message, group, suppressed }, 'Could not read consumer lag from Kafka; retrying');
      lastLogged = now();
      suppressed = 0;
    },
  };
}
