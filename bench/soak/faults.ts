import type { Admin } from 'kafkajs';
import { stack, type InstanceOptions, type Services } from './instance';
import { SOAK_TOPICS } from './records';
import { sleep, within, type Operator } from './traffic';

/** Every fault the scheduler injects; each run cycles through all of them in a seeded order. */
export const FAULTS = [
  'postgres_sigkill',
  'broker_sigkill',
  'temporal_restart',
  'worker_sigkill',
  'ingest_sigkill',
  'topic_recreate',
  'replay_missing_topic',
] as const;
export type Fault = (typeof FAULTS)[number];

export interface FaultRecord {
  kind: Fault;
  startedAt: string;
  recoveredAt?: string;
  target?: string;
  ok: boolean;
  error?: string;
}

export interface FaultContext {
  instance: InstanceOptions;
  services: Services;
  admin: () => Promise<Admin>;
  operator: Operator;
  rand: () => number;
  pickEventId: () => Promise<number | undefined>;
}

const MISSING_TOPIC = 'soak.no.such.topic';

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
      await ctx.services.kill(service);
      await down();
      ctx.services.start(service);
      return;
    }
    case 'topic_recreate': {
      const topic = SOAK_TOPICS[Math.floor(ctx.rand() * SOAK_TOPICS.length)];
      record.target = topic;
      const admin = await ctx.admin();
      await admin.deleteTopics({ topics: [topic], timeout: 15_000 });
      for (let i = 0; i < 60 && (await admin.listTopics()).includes(topic); i++) await sleep(500);
      await sleep(1000);
      await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 3, replicationFactor: 1 }] });
      return;
    }
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
