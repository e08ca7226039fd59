import { ActivityFailure, ApplicationFailure, Client, Connection } from '@temporalio/client';
import type { Admin } from 'kafkajs';
import type { TopicDeletion } from './check';
import { partitionOffsets } from './collect';
import { stack, type InstanceOptions, type Service, type Services } from './instance';
import { SOAK_TOPICS } from './records';
import { sleep, within, type Gate, type Operation, type Operator } from './traffic';

/** Every fault the scheduler injects; each run cycles through all of them in a seeded order. */
export const FAULTS = [
  'postgres_sigkill',
  'broker_sigkill',
  'temporal_restart',
  'worker_sigkill',
  'ingest_sigkill',
  'topic_recreate',
  'replay_missing_topic',
  'replay_target_deleted',
] as const;
export type Fault = (typeof FAULTS)[number];

export interface FaultRecord {
  kind: Fault;
  startedAt: string;
  recoveredAt?: string;
  target?: string;
  ok: boolean;
  error?: string;
  /** topic_recreate: the offsets read just before the delete (the checker's deleted_with_topic rule uses them). */
  deletion?: TopicDeletion;
  /** topic_recreate: whether every replay record published before the delete was consumed first (see below). */
  replaysSettled?: boolean;
  /** topic_recreate: the replay requested right after the re-creation. */
  replayAfterRecreate?: Pick<Operation, 'request' | 'status' | 'workflowId' | 'error'>;
  /** replay_target_deleted: what the range replay whose target topic was deleted mid-run ended as. */
  midReplayDelete?: MidReplayDelete;
}

/** A range replay to a target topic deleted while it ran: the workflow must fail (UnknownTopic), audited as failed. */
export interface MidReplayDelete {
  workflowId?: string;
  targetTopic: string;
  /** Events published before the delete (progress query), so the delete hit a replay that was running. */
  publishedBeforeDelete?: number;
  workflowStatus?: string;
  auditStatus?: string;
  auditError?: string | null;
  /** Seconds from the delete to the workflow's end as observed. */
  secondsToEnd?: number;
  /** From Temporal: the failure's type and retryability, and the activity's retry state (the workflow's cause). */
  failureType?: string;
  nonRetryable?: boolean;
  activityRetryState?: string;
  activityAttempts?: number;
  /** Set when the run could not be arranged (replay finished before the delete, ...): not a verdict on the service. */
  inconclusive?: string;
}

export interface FaultContext {
  instance: InstanceOptions;
  services: Services;
  admin: () => Promise<Admin>;
  operator: Operator;
  rand: () => number;
  pickEventId: (topic?: string) => Promise<number | undefined>;
  /** Called just before a planned kill of a service (the soak scrapes the ingest process's counters there). */
  beforeKill: (service: Service) => Promise<void>;
  /** Holds the operations loop (replays, DLQ retries) while closed. */
  gate: Gate;
  groupId: string;
}

const MISSING_TOPIC = 'soak.no.such.topic';
let targets = 0;

/** Injects one fault and recovers from it (restarts what was killed); bounded to 3 minutes whatever happens. */
export async function injectFault(kind: Fault, ctx: FaultContext): Promise<FaultRecord> {
  const record: FaultRecord = { kind, startedAt: new Date().toISOString(), ok: false };
  const down = () => sleep(2000 + ctx.rand() * 6000);
  try {
    await within(run(kind, ctx, record, down), 180_000, kind);
    record.ok = true;
  } catch (err) {
    record.error = (err as Error).message;
  }
  record.recoveredAt = new Date().toISOString();
  return record;
}

async function run(kind: Fault, ctx: FaultContext, record: FaultRecord, down: () => Promise<void>): Promise<void> {
  const o = ctx.instance;
  switch (kind) {
    case 'postgres_sigkill':
    case 'broker_sigkill': {
      const component = kind === 'postgres_sigkill' ? 'postgres' : 'kafka';
      await stack(o, ['kill', component]);
      await down();
      await stack(o, ['up', component]);
      return;
    }
    case 'temporal_restart':
      await stack(o, ['kill', 'temporal']);
      await stack(o, ['up', 'temporal']);
      return;
    case 'worker_sigkill':
    case 'ingest_sigkill': {
      const service = kind === 'worker_sigkill' ? 'worker' : 'ingest';
      await ctx.beforeKill(service).catch(() => undefined);
      await ctx.services.kill(service);
      await down();
      ctx.services.start(service);
      return;
    }
    case 'topic_recreate': {
      const topic = SOAK_TOPICS[Math.floor(ctx.rand() * SOAK_TOPICS.length)];
      record.target = topic;
      const admin = await ctx.admin();
      // Replays in flight would publish to the log about to be deleted, where they could be lost with it; the
      // checker has no offsets for replay records, so no replay is left in flight or unconsumed at the delete (a
      // replay that meets a deleted topic is the replay_target_deleted fault). Traffic does not stop.
      await ctx.gate.close();
      try {
        record.replaysSettled = await settleReplays(ctx, admin, topic);
        const snapshotAt = Date.now();
        const partitions = (await partitionOffsets(admin, ctx.groupId, [topic])).map(
          ({ partition, committed, high }) => ({ partition, committed, high }),
        );
        const deleteRequestedAt = Date.now();
        record.deletion = {
          topic,
          snapshotAt,
          deleteRequestedAt,
          createRequestedAt: Number.MAX_SAFE_INTEGER,
          partitions,
        };
        await admin.deleteTopics({ topics: [topic], timeout: 15_000 });
        for (let i = 0; i < 60 && (await admin.listTopics()).includes(topic); i++) await sleep(500);
        await sleep(1000);
        record.deletion.createRequestedAt = Date.now();
        await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 3, replicationFactor: 1 }] });
      } finally {
        ctx.gate.open();
      }
      // A replay right after the re-creation, to the re-created topic: must be accepted (the API's topic list is
      // cached), then complete and be journaled once like every other single replay.
      const id = await ctx.pickEventId(topic);
      if (id !== undefined) {
        const op = await ctx.operator.call('single', 'POST', `/replay/${id}`, undefined, [id]);
        op.afterRecreate = true;
        record.replayAfterRecreate = {
          request: op.request,
          status: op.status,
          workflowId: op.workflowId,
          error: op.error,
        };
      }
      return;
    }
    case 'replay_target_deleted':
      record.midReplayDelete = await replayTargetDeleted(ctx, await ctx.admin());
      record.target = record.midReplayDelete.targetTopic;
      return;
    case 'replay_missing_topic': {
      const id = await ctx.pickEventId();
      if (id === undefined) throw new Error('no journal event to replay yet');
      const op = await ctx.operator.call(
        'missing_topic',
        'POST',
        `/replay/${id}?target_topic=${MISSING_TOPIC}`,
        undefined,
        [id],
      );
      record.target = `${op.request} -> ${op.status}`;
      return;
    }
  }
}

/**
 * Waits (bounded) until every replay the soak started has ended, then until the ingest group has consumed the topic
 * up to its high watermarks read after that, so no replay record is still unconsumed on the topic. False if either
 * did not happen in time (the delete then goes ahead; a replay record lost with the topic would show as incomplete).
 */
async function settleReplays(ctx: FaultContext, admin: Admin, topic: string): Promise<boolean> {
  if (!(await ctx.operator.waitIdle(60_000))) return false;
  const target = await admin.fetchTopicOffsets(topic);
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    const now = await partitionOffsets(admin, ctx.groupId, [topic]).catch(() => []);
    const behind = target.filter((t) => {
      const c = now.find((n) => n.partition === t.partition);
      return !c || BigInt(c.committed) < BigInt(t.high);
    });
    if (behind.length === 0) return true;
    await sleep(250);
  }
  return false;
}

/**
 * A throttled range replay of the whole run so far to a topic of its own; once it has published some events, the
 * topic is deleted. The workflow must fail (non-retryable UnknownTopic, so within seconds rather than after the
 * activity's retries) and its audit row must say failed, naming the topic.
 */
async function replayTargetDeleted(ctx: FaultContext, admin: Admin): Promise<MidReplayDelete> {
  const targetTopic = `soak.replay.target.${process.pid}.${++targets}`;
  const out: MidReplayDelete = { targetTopic };
  await admin.createTopics({
    waitForLeaders: true,
    topics: [{ topic: targetTopic, numPartitions: 3, replicationFactor: 1 }],
  });
  const op = await ctx.operator.call('target_deleted', 'POST', '/replay/range', {
    start: new Date(Date.now() - 24 * 3600_000).toISOString(),
    end: new Date().toISOString(),
    target_topic: targetTopic,
    max_events_per_second: 20,
  });
  out.workflowId = op.workflowId;
  if (!op.workflowId) {
    out.inconclusive = `range replay not started: ${op.status} ${op.error ?? ''}`;
    await admin.deleteTopics({ topics: [targetTopic] }).catch(() => undefined);
    return out;
  }
  const deadline = Date.now() + 60_000;
  let st = await ctx.operator.replayStatus(op.workflowId);
  while (Date.now() < deadline && !((st?.progress?.published ?? 0) > 0 && st?.workflow_status === 'RUNNING')) {
    if (st?.workflow_status && st.workflow_status !== 'RUNNING') break;
    await sleep(500);
    st = await ctx.operator.replayStatus(op.workflowId);
  }
  if (st?.workflow_status !== 'RUNNING') {
    out.inconclusive = `the replay was ${st?.workflow_status ?? 'unknown'} before the delete`;
    await admin.deleteTopics({ topics: [targetTopic] }).catch(() => undefined);
    return out;
  }
  out.publishedBeforeDelete = st.progress?.published;
  const deletedAt = Date.now();
  await admin.deleteTopics({ topics: [targetTopic], timeout: 15_000 });
  const endBy = Date.now() + 120_000;
  while (Date.now() < endBy) {
    st = await ctx.operator.replayStatus(op.workflowId);
    if (st?.workflow_status && st.workflow_status !== 'RUNNING' && st.audit?.finished_at) break;
    await sleep(1000);
  }
  out.secondsToEnd = Math.round((Date.now() - deletedAt) / 100) / 10;
  out.workflowStatus = st?.workflow_status;
  out.auditStatus = st?.audit?.status;
  out.auditError = st?.audit?.error;
  if (out.workflowStatus === 'FAILED') Object.assign(out, await failureOf(ctx.instance, op.workflowId));
  // Still running two minutes after its topic went: the checker reports it; cancelled so it cannot outlive the soak.
  if (st?.workflow_status === 'RUNNING') await ctx.operator.cancel(op.workflowId);
  return out;
}

/** The workflow's failure as Temporal holds it: the innermost application failure and the activity's retry state. */
async function failureOf(o: InstanceOptions, workflowId: string): Promise<Partial<MidReplayDelete>> {
  const connection = await Connection.connect({ address: `127.0.0.1:${o.temporalPort}`, connectTimeout: 10_000 });
  try {
    const client = new Client({ connection });
    const handle = client.workflow.getHandle(workflowId);
    const err = await within(handle.result(), 20_000, 'workflow result').then(
      () => undefined,
      (e: unknown) => e,
    );
    const out: Partial<MidReplayDelete> = {};
    for (let e = err as Error | undefined, d = 0; e && d < 10; e = e.cause as Error | undefined, d++) {
      if (e instanceof ActivityFailure) out.activityRetryState = String(e.retryState);
      if (e instanceof ApplicationFailure) {
        out.failureType = e.type ?? undefined;
        out.nonRetryable = e.nonRetryable ?? undefined;
      }
    }
    // The activity's attempt count, from the history: a non-retryable failure ends after one attempt.
    const history = await handle.fetchHistory();
    const failed = history.events?.filter((ev) => ev.activityTaskFailedEventAttributes) ?? [];
    const last = failed[failed.length - 1];
    const scheduledId = last?.activityTaskFailedEventAttributes?.scheduledEventId;
    const started = history.events?.find(
      (ev) =>
        ev.activityTaskStartedEventAttributes &&
        String(ev.activityTaskStartedEventAttributes.scheduledEventId) === String(scheduledId),
    );
    out.activityAttempts = started?.activityTaskStartedEventAttributes?.attempt ?? undefined;
    return out;
  } finally {
    await connection.close().catch(() => undefined);
  }
}
