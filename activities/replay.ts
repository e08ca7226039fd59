import { ApplicationFailure, Context } from '@temporalio/activity';
import { erasedEventMessage } from '../lifecycle/erasure-target';
import { replayRows } from '../repository/event-journal';
import { erasuresOf, withErasuresChecked } from '../repository/erasure';
import type { Queryable } from '../repository/queryable';
import type { ActivityDeps } from './deps';
import type { RefusedIds, ReplayOrdering } from '../journal/kinds';
import { refusalOf, replayMessageOf, type Lineage } from '../journal/lineage';
import { publishMessages } from './publish';
import { batchShape, resumeSender, withRefusedIds } from './durable-progress';
import { publishPage } from './ordered-publish';
import { ownTopicCheck, withRefusedTopics } from './own-topic';
import { preparePage, type RefusedEvent } from './replay-messages';

export type { RefusedEvent } from './replay-messages';

export interface ReplayOneInput extends Lineage {
  eventId: number;
  tenantId?: string;
}

export interface ReplayOneResult {
  event_id: number;
  topic: string;
  tenant_id: string;
  replay_count: number;
}

export interface ReplayPageInput extends Lineage {
  ids: number[];
  tenantId?: string;
  ordering?: ReplayOrdering;
}

/**
 * What a batch page heartbeats under per-key ordering: the ids it has sent (a retry sends the others) and refused, by
 * kind (a retry refuses them again).
 */
interface BatchPageProgress {
  sent: number[];
  refused?: RefusedIds;
}

/** A batch id an erasure deleted, and which erasure. */
export interface ErasedEvent {
  id: number;
  erasure_id: string;
}

export interface ReplayPageResult {
  published: number;
  /** Ids not in the journal (nor erased). */
  unknown: number[];
  refused: RefusedEvent[];
  /** Events not sent because their own topic is not an allowed target, by topic (also listed in `refused`). */
  refusedTopics?: Record<string, number>;
  /** Ids an erasure deleted: EventErased, never retried. */
  erased: ErasedEvent[];
}

/** What must wait for a send that may outlive its call (withErasuresChecked). */
type Keep = (sending: Promise<unknown>) => void;

/** Single and batch replay: read journal rows, republish them with lineage. */
export function createReplayActivities({ pool, producer, metrics, config, lineageKey }: ActivityDeps) {
  return {
    async replayEvent(input: ReplayOneInput): Promise<ReplayOneResult> {
      // Read and sent under the erasures' barrier (withErasuresChecked): an erasure deleting the row meanwhile does
      // not complete before this send has ended. Rows are read after the barrier is held; a missing one is looked up
      // in erased_events after the read (an erasure may have deleted it since the barrier's own check).
      return withErasuresChecked(pool, [input.eventId], producer, (_erased, keep, db) => replayOne(db, input, keep));
    },

    async replayBatchPage(input: ReplayPageInput): Promise<ReplayPageResult> {
      return withErasuresChecked(pool, input.ids, producer, (_erased, keep, db) => replayPage(db, input, keep));
    },
  };

  async function replayOne(db: Queryable, input: ReplayOneInput, keep: Keep): Promise<ReplayOneResult> {
    const [row] = await replayRows(db, [input.eventId]);
    const erasure = row ? undefined : (await erasuresOf(db, [input.eventId])).get(input.eventId);
    if (erasure) throw ApplicationFailure.nonRetryable(erasedEventMessage(input.eventId, erasure), 'EventErased');
    if (!row || (input.tenantId !== undefined && row.tenant_id !== input.tenantId)) {
      throw ApplicationFailure.nonRetryable(`Event ${input.eventId} not found in event_journal`, 'EventNotFound');
    }
    const refusal = refusalOf(row, config.replay.maxHops);
    if (refusal) throw ApplicationFailure.nonRetryable(refusal, 'HopLimitExceeded');
    const topicRefusal = ownTopicCheck(config, { ...input, tenantScoped: input.tenantId !== undefined }).refusal(row);
    if (topicRefusal) throw ApplicationFailure.nonRetryable(topicRefusal, 'InvalidRequest');
    const built = replayMessageOf(row, input, lineageKey);
    if (!built.ok) throw ApplicationFailure.nonRetryable(built.reason, 'TransformFailed');
    const { message } = built;
    await publishMessages(producer, [message], { signal: Context.current().cancellationSignal, track: keep });
    metrics.replayPublished.inc({ kind: 'single' });
    return { event_id: row.id, topic: message.topic, tenant_id: row.tenant_id, replay_count: row.replay_count + 1 };
  }

  async function replayPage(db: Queryable, input: ReplayPageInput, keep: Keep): Promise<ReplayPageResult> {
    const rows = (await replayRows(db, input.ids)).filter(
      (row) => input.tenantId === undefined || row.tenant_id === input.tenantId,
    );
    const found = new Set(rows.map((r) => r.id));
    const ownTopic = ownTopicCheck(config, { ...input, tenantScoped: input.tenantId !== undefined });
    const ctx = Context.current();
    const { durable, resumed } = await resumeSender<BatchPageProgress>(ctx, input.ordering, batchShape, db);
    // What an earlier attempt decided stands (per_key): ids it refused stay refused (heartbeated and written with the
    // ids sent), ids it sent are not decided again.
    const page = preparePage(rows, input, lineageKey, config.replay.maxHops, ownTopic, resumed);
    const refused = withRefusedIds('refused', page.refusedIds);
    const progress = (sent: number[]): BatchPageProgress => ({ sent, ...refused });
    await publishPage(producer, page.outgoing, {
      ordering: input.ordering,
      replayId: input.replayId,
      sender: ctx.info.workflowExecution?.workflowId,
      sent: resumed?.sent,
      onWave: (sent) => ctx.heartbeat(progress(sent)),
      beforeWave: durable && ((sent) => durable.write(db, progress(sent))),
      signal: ctx.cancellationSignal,
      keep,
    });
    metrics.replayPublished.inc({ kind: 'batch' }, page.outgoing.length);
    const missing = input.ids.filter((id) => !found.has(id));
    const erasures = await erasuresOf(db, missing);
    return {
      published: page.outgoing.length,
      unknown: missing.filter((id) => !erasures.has(id)),
      refused: [...page.refused, ...page.transformFailed],
      erased: [...erasures].map(([id, erasure_id]) => ({ id, erasure_id })),
      ...withRefusedTopics(ownTopic.refusedTopics()),
    };
  }
}
