import type { JournalRow } from '../repository/event-journal';

export interface Lineage {
  source: string;
  replayId: string;
  targetTopic?: string;
}

export interface ReplayMessage {
  topic: string;
  key: string;
  value: string;
  headers: Record<string, string>;
}

/**
 * The Kafka message that replays a journal row: its payload plus lineage markers (the event it came from, why,
 * which replay, how many hops from the original), the same markers as headers, keyed like the original.
 */
export function toReplayMessage(row: JournalRow, lineage: Lineage): ReplayMessage {
  const hops = row.replay_count + 1;
  const payload = {
    ...row.payload,
    _replayed_from_event_id: row.id,
    _replay_source: lineage.source,
    _replay_id: lineage.replayId,
    _replay_count: hops,
  };
  return {
    topic: lineage.targetTopic ?? row.topic,
    key: row.kafka_key ?? row.tenant_id,
    value: JSON.stringify(payload),
    headers: {
      'x-tenant-id': row.tenant_id,
      'x-replayed-from-event-id': String(row.id),
      'x-replay-source': lineage.source,
      'x-replay-id': lineage.replayId,
      'x-replay-count': String(hops),
    },
  };
}

/** Why a row may not be replayed, or undefined when it may. */
export function refusalOf(row: JournalRow, maxHops: number): string | undefined {
  if (row.replay_count + 1 > maxHops) {
    return `Event ${row.id} is already ${row.replay_count} replay hop(s) from its original; REPLAY_MAX_HOPS is ${maxHops}`;
  }
  return undefined;
}
