import { createMetrics, createTenantLabeler } from '../../shared/metrics';

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
});
