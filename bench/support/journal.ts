import type { Pool } from '../../shared/db';
import type { TrafficEvent } from '../../cli/traffic';

/** Journals the given events directly (no Kafka coordinates), returning their ids in order. */
export async function journalEvents(pool: Pool, events: TrafficEvent[]): Promise<number[]> {
  const { rows } = await pool.query<{ id: number }>(
    `INSERT INTO event_journal (tenant_id, topic, payload, kafka_key)
     SELECT (p->>'tenant_id'), t, p, k FROM unnest($1::text[], $2::jsonb[], $3::text[]) AS u(t, p, k)
     RETURNING id`,
    [events.map((e) => e.topic), events.map((e) => e.value), events.map((e) => e.key)],
  );
  return rows.map((r) => r.id).sort((a, b) => a - b);
}

/**
 * Seeds `count` original events in one INSERT ... SELECT generate_series: lead-shaped payloads of about 350 bytes
 * (like makeEvent's), `tenants` tenants named like the gateway's, topics taken in turn (independently of the tenant), received_at
 * `stepMs` apart from `from`.
 */
export async function seedSeries(
  pool: Pool,
  opts: { count: number; topics: string[]; tenants: number; from: Date; stepMs: number; offset?: number },
): Promise<void> {
  await pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload, received_at, kafka_key)
     SELECT s.tenant, ($2::text[])[1 + ((s.g / 7) % array_length($2::text[], 1))],
            jsonb_build_object(
              'event_type', 'lead.created', 'tenant_id', s.tenant, 'event_id', md5(s.g::text)::uuid,
              'occurred_at', $4::timestamptz + make_interval(secs => s.g * $5::float8 / 1000), 'seq', s.g,
              'lead_id', s.g + 1, 'name', 'Grace Hopper', 'email', 'grace.hopper.' || s.g || '@example.com',
              'phone', '+1-555-' || lpad((1000 + s.g % 9000)::text, 4, '0'), 'source', 'web-form',
              'notes', 'Asked for a callback about the premium plan; prefers mornings.'),
            $4::timestamptz + make_interval(secs => s.g * $5::float8 / 1000),
            s.tenant || ':' || s.g
       FROM (SELECT g, CASE WHEN g % $3 = 0 THEN 'acme' ELSE 'tenant-' || lpad((g % $3 + 1)::text, 3, '0') END AS tenant
               FROM generate_series($6::bigint, $6::bigint + $1 - 1) AS g) AS s`,
    [opts.count, opts.topics, opts.tenants, opts.from, opts.stepMs, opts.offset ?? 0],
  );
}

/**
 * The range the replay benchmarks replay: `count` rows seeded by seedSeries (two topics, 50 tenants, `stepMs` apart
 * from 2024-01-01), the journal vacuumed and analysed; returns the window that holds exactly them.
 */
export async function seedReplayRange(
  pool: Pool,
  count: number,
  stepMs: number,
): Promise<{ start: string; end: string }> {
  const from = new Date('2024-01-01T00:00:00Z');
  await seedSeries(pool, {
    count,
    topics: ['apexflow.leads.created', 'apexflow.jobs.created'],
    tenants: 50,
    from,
    stepMs,
  });
  await pool.query('VACUUM ANALYZE event_journal');
  return { start: from.toISOString(), end: new Date(from.getTime() + count * stepMs + 1000).toISOString() };
}
