import type { ConsumerRestartReason } from '../journal/kinds';
import type { Logger } from '../shared/logger';
import type { ConsumerRestarter } from './consumer-restart';
import { describeStall, partitionKey, type LagMonitor, type StalledPartition } from './lag-monitor';

/**
 * The ingest watchdog: the recovery half of invariant 4 (docs/integrity.md). kafkajs can stop consuming without an
 * error or a CRASH event — the cluster fault suite saw both ingest processes retry OffsetFetch against a coordinator
 * that stayed "loading" for minutes after its broker was killed — and then nothing in the process notices. The lag
 * monitor, reading the group's committed offsets from outside the consumer, does; this acts on what it reports: when
 * a partition this process owns (or, owning none, any partition of the group) has been stalled for the watchdog's
 * time, and ingestion is not paused on purpose, it has the process's Kafka consumer replaced by a fresh one
 * (ingest/consumer-restart.ts, which also serves a consumer kafkajs crashed for good).
 */

/** A partition given to this process's consumer. */
export interface AssignedPartition {
  topic: string;
  partition: number;
}

/** What the watchdog watches: the ingest consumer (ingest/consumer.ts); tests pass fakes. */
export interface WatchedConsumer {
  /** The partitions of the consumer's last group join; empty before it joined. */
  assignment(): AssignedPartition[];
  /** True while ingestion is paused on purpose (Postgres unreachable): a stall is then expected, not a hang. */
  isPaused(): boolean;
}

export interface WatchdogOptions {
  consumer: WatchedConsumer;
  monitor: Pick<LagMonitor, 'stalled' | 'lastRead'>;
  /** Replaces the consumer when a restart is due (shared with the consumer's crash listener). */
  restarter: ConsumerRestarter;
  log: Logger;
  /** INGEST_WATCHDOG_SECONDS in ms: how long a partition stays stalled before the consumer is restarted. */
  afterMs: number;
  /** How often the watchdog looks (default: a quarter of afterMs, between 100 ms and 5 s). */
  checkEveryMs?: number;
}

export interface Watchdog {
  /** Looks once, and restarts the consumer if due; resolves when that restart is over. The timer calls it. */
  check(): Promise<void>;
  /** No more checks (the restarter's own stop ends a restart in flight). */
  stop(): void;
}

/** What the watchdog reads at one check. */
export interface WatchdogView {
  now: number;
  afterMs: number;
  paused: boolean;
  /** When the lag monitor last read Kafka (epoch ms); undefined if it never has. */
  readAt: number | undefined;
  assignment: AssignedPartition[];
  stalled: StalledPartition[];
}

/** A restart that is due, why, and the stalled partitions that make it due. */
export interface RestartDue {
  reason: ConsumerRestartReason;
  partitions: StalledPartition[];
}

/** Cooldowns double after each restart that did not end the stall, up to afterMs × 2^MAX_DOUBLINGS. */
const MAX_DOUBLINGS = 3;

/**
 * Whether the consumer should be restarted now, cooldown aside. Never while ingestion is paused for a Postgres outage
 * (waiting is right then), nor on a lag reading older than afterMs (Kafka itself unreadable: a fresh consumer would
 * hang the same way). Otherwise: partitions stalled for at least afterMs that this process owns ('stalled'), or, when
 * it owns none, any of them ('unassigned': a member with nothing that the group waits on may be the hung one, and
 * rejoining makes the group rebalance).
 */
export function restartDue(view: WatchdogView): RestartDue | undefined {
  const { now, afterMs } = view;
  if (view.paused) return undefined;
  if (view.readAt === undefined || now - view.readAt > afterMs) return undefined;
  const overdue = view.stalled.filter((s) => now - s.since.getTime() >= afterMs);
  if (overdue.length === 0) return undefined;
  if (view.assignment.length === 0) return { reason: 'unassigned', partitions: overdue };
  const owned = new Set(view.assignment.map(partitionKey));
  const mine = overdue.filter((s) => owned.has(partitionKey(s)));
  return mine.length > 0 ? { reason: 'stalled', partitions: mine } : undefined;
}

/**
 * Starts checking every checkEveryMs. The first restart may come afterMs after the start at the earliest (a fresh
 * consumer gets that long to resume), and each later one a cooldown after the previous: afterMs, doubled after each
 * restart that did not end the stall (at most 8 × afterMs), back to afterMs once nothing is due.
 */
export function startWatchdog(opts: WatchdogOptions): Watchdog {
  const { consumer, monitor, restarter, log, afterMs } = opts;
  const checkEveryMs = opts.checkEveryMs ?? Math.min(5000, Math.max(100, afterMs / 4));
  let quietSince = Date.now(); // the start, or the end of the last restart
  let fruitless = 0; // restarts since the last check that found nothing due
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const restart = async ({ reason, partitions }: RestartDue) => {
    const names = partitions.map(partitionKey);
    const now = Date.now();
    log.warn(
      { reason, partitions: names, stalls: partitions.map((s) => describeStall(s, now)) },
      `Ingest watchdog: restarting the Kafka consumer (${reason}: ${names.join(', ')} stalled for ${afterMs / 1000} s or more)`,
    );
    await restarter.restart(reason, { partitions: names });
  };

  const check = async () => {
    const now = Date.now();
    const due = restartDue({
      now,
      afterMs,
      paused: consumer.isPaused(),
      readAt: monitor.lastRead()?.getTime(),
      assignment: consumer.assignment(),
      stalled: monitor.stalled(),
    });
    if (due === undefined) {
      fruitless = 0;
      return;
    }
    const cooldown = afterMs * 2 ** Math.min(Math.max(fruitless - 1, 0), MAX_DOUBLINGS);
    if (stopped || now - quietSince < cooldown) return;
    await restart(due);
    quietSince = Date.now();
    fruitless += 1;
  };

  const loop = () => {
    if (stopped) return;
    const next = () =>
      check()
        .catch((err: Error) => log.error({ err }, 'Ingest watchdog: check failed'))
        .finally(loop);
    timer = setTimeout(() => void next(), checkEveryMs);
    timer.unref();
  };
  loop();

  return {
    check,
    stop: () => {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
