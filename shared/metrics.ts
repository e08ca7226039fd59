import client from 'prom-client';
import {
  CONSUMER_RESTART_REASONS,
  DLQ_RETRY_OUTCOMES,
  NOTIFICATION_DELIVERY_STATUSES,
  RECORD_OUTCOMES,
  REPLAY_KINDS,
  WORKFLOW_END_STATUSES,
} from '../journal/kinds';

/**
 * The service's Prometheus metrics. Names and labels follow the operator docs: dashboards and alerts in monitoring/
 * query exactly these. `registry` holds every series of the process (the metrics port, METRICS_PORT); `apiRegistry`
 * only the API's own (HTTP and live stream), which the API serves at its public /metrics: they carry no tenant label,
 * whereas ingest's counters do, and in `npm start` ingest and API share this process.
 */
export function createMetrics(tenantLabelLimit = 100, sources: MetricSources = {}) {
  const registry = new client.Registry();
  const apiRegistry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[], api = false) =>
    new client.Counter<L>({ name, help, labelNames, registers: api ? [registry, apiRegistry] : [registry] });
  const partitionGauge = (name: string, help: string) =>
    new client.Gauge<'topic' | 'partition'>({ name, help, labelNames: ['topic', 'partition'], registers: [registry] });
  // Read from Postgres at scrape time; if it does not answer within 1 s, the last value stays (and /health reports
  // the outage).
  const scraped = (name: string, help: string, read?: () => Promise<number>) =>
    new client.Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        if (!read) return;
        const value = await Promise.race([
          read(),
          new Promise<undefined>((r) => setTimeout(() => r(undefined), 1000)),
        ]).catch(() => undefined);
        if (value !== undefined) this.set(value);
      },
    });

  return {
    registry,
    apiRegistry,
    tenantLabel: createTenantLabeler(tenantLabelLimit),
    ingested: counter('crm_events_ingested_total', 'CRM domain events consumed from Kafka', ['tenant_id', 'topic']),
    persisted: counter('crm_events_persisted_total', 'CRM domain events written to event_journal', [
      'tenant_id',
      'topic',
    ]),
    dlq: counter('crm_events_dlq_total', 'Records sent to event_dlq', ['topic', 'reason']),
    replayed: counter('crm_events_replayed_total', 'Replayed events journaled again', ['topic', 'replay_source']),
    dlqSize: scraped('crm_events_dlq_size', 'Rows in event_dlq not yet resolved', sources.dlqSize),
    journalDefaultRows: scraped(
      'crm_events_journal_default_partition_rows',
      'Journal rows in the default partition: no time partition covered them when written (docs/lifecycle.md)',
      sources.journalDefaultRows,
    ),
    journalPartitionsAhead: scraped(
      'crm_events_journal_partitions_ahead',
      'Journal partitions that start after now (maintenance keeps JOURNAL_PARTITIONS_AHEAD of them)',
      sources.journalPartitionsAhead,
    ),
    maintenanceLastSuccess: scraped(
      'crm_events_journal_maintenance_last_success_timestamp_seconds',
      'When the journal maintenance workflow last completed (0: never)',
      sources.maintenanceLastSuccess,
    ),
    consumed: counter('crm_events_consumed_total', 'Records consumed from Kafka (invariant 3: = sum of outcomes)', [
      'topic',
      'partition',
    ]),
    recordOutcomes: counter<'topic' | 'partition' | 'outcome'>(
      'crm_events_record_outcomes_total',
      `Where each consumed record ended (${RECORD_OUTCOMES.join(', ')})`,
      ['topic', 'partition', 'outcome'],
    ),
    coordinateReuse: counter(
      'crm_events_coordinate_reuse_total',
      'Records journaled at Kafka coordinates already used by a different record (topic re-created, cluster moved)',
      ['topic', 'partition'],
    ),
    // The three gauges below are set by the lag monitor (ingest/lag-monitor.ts) from the Kafka admin API, on a timer.
    consumerLag: partitionGauge(
      'crm_events_consumer_lag',
      'Messages between the committed offset and the high watermark',
    ),
    committedOffset: partitionGauge('crm_events_committed_offset', "The consumer group's committed offset"),
    partitionStalled: partitionGauge(
      'crm_events_partition_stalled',
      '1 when the partition has lag and its committed offset has not moved for INGEST_STALL_SECONDS',
    ),
    consumerRestarts: counter(
      'crm_events_ingest_consumer_restarts_total',
      `Kafka consumer restarts (by the ingest watchdog, or after a crash kafkajs does not retry), by reason (${CONSUMER_RESTART_REASONS.join(', ')})`,
      ['reason'],
    ),
    batchPersistSeconds: new client.Histogram({
      name: 'crm_events_batch_persist_seconds',
      help: 'Time to journal one consumed batch (one statement per batch)',
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    replayWorkflows: counter('crm_events_replay_workflows_total', 'Replay workflows finished, by kind and status', [
      'kind',
      'status',
    ]),
    replayPublished: counter('crm_events_replay_published_total', 'Events republished to Kafka by replays', ['kind']),
    replayDuration: new client.Histogram<'kind'>({
      name: 'crm_events_replay_duration_seconds',
      help: 'Duration of replay workflows from start to close',
      labelNames: ['kind'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
      registers: [registry],
    }),
    dlqRetry: counter('crm_events_dlq_retry_total', 'DLQ entries retried, by result', ['result']),
    notificationsStarted: counter(
      'crm_events_notifications_started_total',
      'Notification deliveries started (one workflow per notification and URL; duplicate: already started)',
      ['kind', 'result'],
    ),
    notificationEmitErrors: counter(
      'crm_events_notification_emit_errors_total',
      'Notifications that could not be started (Temporal or Postgres unreachable); the data path went on',
      ['kind'],
    ),
    notificationDeliveries: counter(
      'crm_events_notification_deliveries_total',
      `Notification delivery attempts, by status (${NOTIFICATION_DELIVERY_STATUSES.join(', ')})`,
      ['kind', 'status'],
    ),
    httpRequests: counter(
      'crm_events_http_requests_total',
      'HTTP requests served by the API',
      ['method', 'route', 'status'],
      true,
    ),
    httpDuration: new client.Histogram<'method' | 'route'>({
      name: 'crm_events_http_request_duration_seconds',
      help: 'HTTP request duration',
      labelNames: ['method', 'route'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry, apiRegistry],
    }),
    sseClients: new client.Gauge({
      name: 'crm_events_sse_clients',
      help: 'Clients connected to the live event stream',
      registers: [registry, apiRegistry],
    }),
    sseMessages: counter('crm_events_messages_total', 'Events relayed to live stream clients', [], true),
    sseDropped: counter('crm_events_sse_dropped_total', 'Events dropped for slow live stream clients', [], true),
    exportedRows: counter('crm_events_export_rows_total', 'Journal rows read for GET /events/export', [], true),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/**
 * Starts the alerting counters at zero for every label set they can take, so that the first failure after a start
 * is an increase Prometheus can see (a series born at 1 shows no increase()).
 */
export function initAlertSeries(metrics: Metrics): void {
  for (const kind of REPLAY_KINDS) {
    for (const status of WORKFLOW_END_STATUSES) metrics.replayWorkflows.inc({ kind, status }, 0);
    metrics.replayPublished.inc({ kind }, 0);
  }
  for (const result of DLQ_RETRY_OUTCOMES) metrics.dlqRetry.inc({ result }, 0);
  for (const reason of CONSUMER_RESTART_REASONS) metrics.consumerRestarts.inc({ reason }, 0);
}

/**
 * Starts the per-partition accounting and coordinate-reuse counters at zero for one partition, so that the alerts
 * over them see the first record as an increase. Call it when a partition is assigned (or first seen).
 */
export function initPartitionSeries(metrics: Metrics, topic: string, partition: number): void {
  const labels = { topic, partition: String(partition) };
  metrics.consumed.inc(labels, 0);
  for (const outcome of RECORD_OUTCOMES) metrics.recordOutcomes.inc({ ...labels, outcome }, 0);
  metrics.coordinateReuse.inc(labels, 0);
}

/** Values read at scrape time rather than counted as they happen. */
export interface MetricSources {
  dlqSize?: () => Promise<number>;
  journalDefaultRows?: () => Promise<number>;
  journalPartitionsAhead?: () => Promise<number>;
  maintenanceLastSuccess?: () => Promise<number>;
}

/**
 * Caps tenant_id label cardinality: the first `limit` tenants seen keep their own series, the rest fold into "other".
 */
export function createTenantLabeler(limit: number): (tenantId: string) => string {
  const seen = new Set<string>();
  return (tenantId) => {
    if (seen.has(tenantId)) return tenantId;
    if (seen.size < limit) {
      seen.add(tenantId);
      return tenantId;
    }
    return 'other';
  };
}
