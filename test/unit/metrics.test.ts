import { CONSUMER_RESTART_REASONS, RECORD_OUTCOMES, REPLAY_KINDS, WORKFLOW_END_STATUSES } from '../../journal/kinds';
import { createMetrics, createTenantLabeler, initAlertSeries, initPartitionSeries } from '../../shared/metrics';

describe('metrics', () => {
  it('caps tenant_id label cardinality: tenants past the limit fold into "other"', () => {
    const label = createTenantLabeler(2);
    expect(['acme', 'globex', 'initech', 'acme', 'umbrella'].map(label)).toEqual([
      'acme',
      'globex',
      'other',
      'acme',
      'other',
    ]);
  });

  it('registers every metric the operator docs, dashboards and alerts use, plus process metrics', async () => {
    const { registry } = createMetrics();
    const names = (await registry.getMetricsAsJSON()).map((m) => m.name);
    expect(names).toEqual(
      expect.arrayContaining([
        'crm_events_ingested_total',
        'crm_events_persisted_total',
        'crm_events_dlq_total',
        'crm_events_replayed_total',
        'crm_events_dlq_size',
        'crm_events_consumer_lag',
        'crm_events_consumed_total',
        'crm_events_record_outcomes_total',
        'crm_events_coordinate_reuse_total',
        'crm_events_committed_offset',
        'crm_events_partition_stalled',
        'crm_events_ingest_consumer_restarts_total',
        'crm_events_batch_persist_seconds',
        'crm_events_replay_workflows_total',
        'crm_events_replay_published_total',
        'crm_events_replay_duration_seconds',
        'crm_events_dlq_retry_total',
        'crm_events_http_requests_total',
        'crm_events_http_request_duration_seconds',
        'crm_events_sse_clients',
        'crm_events_messages_total',
        'process_resident_memory_bytes',
        'process_cpu_seconds_total',
      ]),
    );
  });

  it("keeps the API's own series, none labelled by tenant, in the registry its public /metrics serves", async () => {
    const { apiRegistry } = createMetrics();
    const metrics = await apiRegistry.getMetricsAsJSON();
    expect(metrics.map((m) => m.name).sort()).toEqual([
      'crm_events_export_rows_total',
      'crm_events_http_request_duration_seconds',
      'crm_events_http_requests_total',
      'crm_events_messages_total',
      'crm_events_sse_clients',
      'crm_events_sse_dropped_total',
    ]);
    const labels = apiRegistry
      .getMetricsAsArray()
      .flatMap((m) => (m as unknown as { labelNames: string[] }).labelNames);
    expect(labels).toEqual(expect.arrayContaining(['method', 'route', 'status']));
    expect(labels).not.toContain('tenant_id');
  });

  it('starts the alerting counters at zero for every kind, status and outcome in journal/kinds.ts', async () => {
    const metrics = createMetrics();
    initAlertSeries(metrics);
    const workflows = (await metrics.replayWorkflows.get()).values;
    expect(workflows).toHaveLength(REPLAY_KINDS.length * WORKFLOW_END_STATUSES.length);
    expect(workflows.every((v) => v.value === 0)).toBe(true);
    expect((await metrics.dlqRetry.get()).values.map((v) => v.labels.result).sort()).toEqual([
      'parked',
      'resolved',
      'retrying',
      'skipped',
    ]);
    const restarts = (await metrics.consumerRestarts.get()).values;
    expect(restarts.map((v) => v.labels.reason).sort()).toEqual([...CONSUMER_RESTART_REASONS].sort());
    expect(restarts.every((v) => v.value === 0)).toBe(true);
  });

  it("starts one partition's accounting series at zero: consumed, every outcome, coordinate reuse", async () => {
    const metrics = createMetrics();
    initPartitionSeries(metrics, 'apexflow.leads.created', 2);
    const labels = { topic: 'apexflow.leads.created', partition: '2' };
    expect((await metrics.consumed.get()).values).toEqual([{ labels, value: 0 }]);
    expect((await metrics.coordinateReuse.get()).values).toEqual([{ labels, value: 0 }]);
    const outcomes = (await metrics.recordOutcomes.get()).values;
    expect(outcomes.map((v) => v.labels.outcome).sort()).toEqual([...RECORD_OUTCOMES].sort());
    expect(outcomes.every((v) => v.value === 0 && v.labels.partition === '2')).toBe(true);
  });

  it('exposes the accounting counters with the labels the alerts group by', async () => {
    const metrics = createMetrics();
    metrics.consumed.inc({ topic: 't', partition: '0' }, 3);
    metrics.recordOutcomes.inc({ topic: 't', partition: '0', outcome: 'journaled' }, 2);
    metrics.recordOutcomes.inc({ topic: 't', partition: '0', outcome: 'redelivered' });
    metrics.partitionStalled.set({ topic: 't', partition: '0' }, 1);
    const text = await metrics.registry.metrics();
    expect(text).toContain('crm_events_consumed_total{topic="t",partition="0"} 3');
    expect(text).toContain('crm_events_record_outcomes_total{topic="t",partition="0",outcome="journaled"} 2');
    expect(text).toContain('crm_events_record_outcomes_total{topic="t",partition="0",outcome="redelivered"} 1');
    expect(text).toContain('crm_events_partition_stalled{topic="t",partition="0"} 1');
  });
});
