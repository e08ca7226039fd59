import { countBy } from '../shared/count-by';
import type { Logger } from '../shared/logger';
import type { Metrics } from '../shared/metrics';
import type { AppendOutcome } from '../journal/append';

/**
 * Metrics and log lines for one journaled batch. Small batches log one line per event in the operator docs'
 * wording; larger ones log a single summary so that logging never dominates ingestion under load.
 */
export function reportBatch(outcome: AppendOutcome, metrics: Metrics, log: Logger, perEventLimit: number): void {
  const entries = outcome.journaled.map(({ record }) => record.entry);
  const persisted = countBy(entries, ({ tenantId, topic }) => ({ tenant_id: metrics.tenantLabel(tenantId), topic }));
  for (const [labels, count] of persisted) metrics.persisted.inc(labels, count);
  const replays = countBy(
    entries.filter((e) => e.replayCount > 0),
    ({ topic, replaySource }) => ({ topic, replay_source: replaySource ?? 'unknown' }),
  );
  for (const [labels, count] of replays) metrics.replayed.inc(labels, count);
  for (const { entry, reason } of outcome.deadLetters) {
    metrics.dlq.inc({ topic: entry.topic, reason });
    log.warn(
      { topic: entry.topic, partition: entry.partition, offset: entry.offset, tenant_id: entry.tenantId, reason },
      `Sent record to DLQ: ${entry.error}`,
    );
  }
  if (outcome.journaled.length <= perEventLimit) {
    for (const { row, record } of outcome.journaled) {
      const { tenantId, topic, replayCount } = record.entry;
      const fields = { event_id: row.id, tenant_id: tenantId, topic, replay_count: replayCount };
      if (replayCount > 0) {
        log.info(
          { ...fields, replayed_from: record.lineage?.replayedFrom },
          `Persisted REPLAYED ${record.eventType} for tenant ${tenantId} (from event ${record.lineage?.replayedFrom ?? '?'})`,
        );
      } else {
        log.info(fields, `Persisted ${record.eventType} for tenant ${tenantId}`);
      }
    }
    return;
  }
  const byType: Record<string, number> = {};
  let replayed = 0;
  for (const { record } of outcome.journaled) {
    byType[record.eventType] = (byType[record.eventType] ?? 0) + 1;
    if (record.entry.replayCount > 0) replayed += 1;
  }
  log.info(
    { persisted: outcome.journaled.length, replayed, by_type: byType, redelivered: outcome.redelivered },
    `Persisted ${outcome.journaled.length} events (${replayed} REPLAYED)`,
  );
}

/** Invariant 3, per partition: consumed = journaled + dead-lettered + redelivered; and every coordinate reuse, loud. */
export function accountBatch(
  outcome: AppendOutcome,
  topic: string,
  partition: number,
  metrics: Metrics,
  log: Logger,
): void {
  const labels = { topic, partition: String(partition) };
  metrics.consumed.inc(labels, outcome.outcomes.length);
  for (const [{ outcome: result }, count] of countBy(outcome.outcomes, (o) => ({ outcome: o }))) {
    metrics.recordOutcomes.inc({ ...labels, outcome: result }, count);
  }
  if (outcome.reused.length === 0) return;
  metrics.coordinateReuse.inc(labels, outcome.reused.length);
  for (const reuse of outcome.reused.slice(0, 10)) {
    log.warn(
      { topic, partition, offset: reuse.offset, content_hash: reuse.hash, stored_hashes: reuse.stored },
      'Coordinate reuse: these Kafka coordinates already hold a different record (topic re-created or offsets reset); stored as a new record',
    );
  }
  if (outcome.reused.length > 10) {
    log.warn(
      { topic, partition, reused: outcome.reused.length },
      `Coordinate reuse: ${outcome.reused.length} records in one batch`,
    );
  }
}
