import http from 'node:http';
import { finished } from 'node:stream/promises';
import { gunzipSync } from 'node:zlib';
import pg from 'pg';
import { createApiEnv, bearer, json, type ApiEnv } from '../support/api';
import { journalPayloads } from '../support/payloads';
import { eventually } from '../support/sink';
import { signToken } from '../support/tokens';

/**
 * GET /events/export on a listening API: NDJSON equal to the journal rows in id order (payloads byte-exact), the
 * same in both gzip forms, /events filters and tenant scoping, and backpressure: a client that stops reading stops
 * the export's cursor.
 */
const SECRET = 'events-export-test-secret-0123456789';
const STATEMENT_TIMEOUT_S = 5;
let env: ApiEnv;
let base: string;
const token = (role: string, claims: Record<string, unknown> = {}) =>
  bearer(signToken({ sub: `ex-${role}`, role, exp: Math.floor(Date.now() / 1000) + 600, ...claims }, SECRET));

const payloads: Record<string, unknown>[] = Array.from({ length: 60 }, (_, i) => ({
  seq: i,
  source: i % 3 === 0 ? 'trade-show' : 'web',
  contact: { country: i % 2 ? 'DE' : 'FR' },
  name: `Exported "${i}" \u00e9\n`,
}));
let ids: number[];

beforeAll(async () => {
  env = await createApiEnv('eventsexport', {
    ingest: false,
    worker: false,
    // Short, so that the large export below outlives it: an export must not be cut by the pool's statement_timeout.
    env: { AUTH_JWT_SECRET: SECRET, DATABASE_STATEMENT_TIMEOUT: `${STATEMENT_TIMEOUT_S}s` },
  });
  await env.app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(env.app.server.address() as { port: number }).port}`;
  ids = await journalPayloads(env.h.pool, 'ex-a', env.h.topics.leads, payloads);
  // Numbers no double holds: the export must print them as Postgres does.
  await env.h.pool.query(
    `INSERT INTO event_journal (tenant_id, topic, payload, kafka_key)
     VALUES ('ex-a', $1, '{"seq": 60, "amount": 12345678901234567890.1234567890, "tiny": 1e-30}', 'k-60')`,
    [env.h.topics.jobs],
  );
  ids.push(...(await journalPayloads(env.h.pool, 'ex-b', env.h.topics.leads, [{ seq: 0, source: 'trade-show' }])));
});
afterAll(() => env?.close());

interface Got {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}
function get(path: string, headers: Record<string, string> = {}): Promise<Got> {
  return new Promise((resolve, reject) => {
    http
      .get(`${base}${path}`, { headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
}
const lines = (body: Buffer) => body.toString('utf8').split('\n').slice(0, -1);

describe('GET /events/export', () => {
  it('writes one line per journal row, in id order, equal to the row with its payload as Postgres prints it', async () => {
    const res = await get('/events/export?tenant_id=ex-a', token('viewer'));
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/x-ndjson; charset=utf-8');
    expect(res.body.toString().endsWith('\n')).toBe(true);
    const { rows } = await env.h.pool.query(
      `SELECT id, tenant_id, topic, received_at, replay_count, replay_source, kafka_partition, kafka_offset, kafka_key,
              payload::text AS payload_text
         FROM event_journal WHERE tenant_id = 'ex-a' ORDER BY id`,
    );
    const got = lines(res.body);
    expect(got).toHaveLength(61);
    got.forEach((line, i) => {
      const row = rows[i];
      const parsed = JSON.parse(line) as Record<string, unknown>;
      expect({ ...parsed, payload: undefined, received_at: undefined }).toEqual({
        id: Number(row.id),
        tenant_id: row.tenant_id,
        topic: row.topic,
        replay_count: row.replay_count,
        replay_source: row.replay_source,
        kafka_partition: row.kafka_partition,
        kafka_offset: row.kafka_offset === null ? null : Number(row.kafka_offset),
        kafka_key: row.kafka_key,
        payload: undefined,
        received_at: undefined,
      });
      expect(Date.parse(parsed.received_at as string)).toBe((row.received_at as Date).getTime());
      expect(line.endsWith(`"payload" : ${row.payload_text}}`)).toBe(true);
    });
    expect(got[60]).toContain('12345678901234567890.1234567890');
    expect(Number(res.headers['x-export-last-id'])).toBeGreaterThanOrEqual(ids[ids.length - 1]);
  });

  it('applies every /events filter, the payload filter included, and matches GET /events', async () => {
    const query = new URLSearchParams({
      tenant_id: 'ex-a',
      topic: env.h.topics.leads,
      payload_filter: '$.source == "trade-show" && $.contact.country == "DE"',
    });
    const exported = lines((await get(`/events/export?${query}`, token('viewer'))).body).map(
      (l) => (JSON.parse(l) as { id: number }).id,
    );
    expect(exported).toEqual(ids.filter((_, i) => i < 60 && i % 3 === 0 && i % 2 === 1));
    const listed = await env.app.inject({
      method: 'GET',
      url: `/events?${query}&limit=1000`,
      headers: token('viewer'),
    });
    expect(json<{ items: { id: number }[] }>(listed).items.map((r) => r.id)).toEqual([...exported].reverse());
  });

  it('gzips as a file with ?gzip=true and on the wire with Accept-Encoding, both decompressing to the same lines', async () => {
    const plain = await get('/events/export?tenant_id=ex-a', token('viewer'));
    const file = await get('/events/export?tenant_id=ex-a&gzip=true', token('viewer'));
    expect(file.headers['content-type']).toBe('application/gzip');
    expect(file.headers['content-disposition']).toBe('attachment; filename="events.ndjson.gz"');
    expect(gunzipSync(file.body).equals(plain.body)).toBe(true);
    const wire = await get('/events/export?tenant_id=ex-a', { ...token('viewer'), 'accept-encoding': 'gzip' });
    expect(wire.headers['content-encoding']).toBe('gzip');
    expect(wire.headers['content-type']).toBe('application/x-ndjson; charset=utf-8');
    expect(gunzipSync(wire.body).equals(plain.body)).toBe(true);
  });

  it('scopes a tenant token like GET /events: its own rows only, another tenant is a 403; no token is a 401', async () => {
    const own = await get('/events/export', token('viewer', { tenant_id: 'ex-b' }));
    expect(lines(own.body).map((l) => (JSON.parse(l) as { tenant_id: string }).tenant_id)).toEqual(['ex-b']);
    const other = await get('/events/export?tenant_id=ex-a', token('viewer', { tenant_id: 'ex-b' }));
    expect(other.status).toBe(403);
    expect(JSON.parse(other.body.toString()).message).toMatch(/scoped to tenant ex-b; it may not read tenant ex-a/);
    expect((await get('/events/export')).status).toBe(401);
  });

  it('refuses an invalid payload filter with a 400 before streaming anything', async () => {
    const res = await get(`/events/export?${new URLSearchParams({ payload_filter: '$.a ==' })}`, token('viewer'));
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body.toString()).message).toMatch(/payload_filter is not a valid JSONPath predicate: syntax/);
  });
});

describe('GET /events/export of 300,000 rows', () => {
  const TOTAL = 300_000;
  const exportedRows = async () => (await env.h.metrics.exportedRows.get()).values[0]?.value ?? 0;

  beforeAll(async () => {
    // On a connection of its own, without the pool's short statement_timeout.
    const seeder = new pg.Client({ connectionString: env.h.config.databaseUrl });
    await seeder.connect();
    const SLICE = 50_000;
    for (let from = 1; from <= TOTAL; from += SLICE) {
      await seeder.query(
        `INSERT INTO event_journal (tenant_id, topic, payload, received_at)
         SELECT 'ex-big', $1, jsonb_build_object('n', g, 'pad', repeat('x', 200)), now() - interval '2 hours'
           FROM generate_series($2::int, $3::int) AS g`,
        [env.h.topics.leads, from, from + SLICE - 1],
      );
    }
    await seeder.end();
  }, 300_000);

  it('reads the journal only as fast as the client takes lines: a paused client stops the cursor', async () => {
    const before = await exportedRows();
    const began = Date.now();
    const res = await new Promise<http.IncomingMessage>((resolve, reject) =>
      http.get(`${base}/events/export?tenant_id=ex-big`, { headers: token('viewer') }, resolve).on('error', reject),
    );
    const first: Buffer = await new Promise((resolve) =>
      res.once('data', (chunk: Buffer) => {
        res.pause();
        resolve(chunk);
      }),
    );
    expect(first.toString().startsWith('{"id" : ')).toBe(true);
    // Wait until the server has filled the socket's buffers and stopped reading (the count stops moving).
    let last = -1;
    let still = 0;
    const stalled = await eventually(
      async () => {
        const now = (await exportedRows()) - before;
        still = now === last ? still + 1 : 0;
        last = now;
        await new Promise((r) => setTimeout(r, 200));
        return still >= 5 ? now : undefined;
      },
      'the export to stop reading while its client is paused',
      120_000,
    );
    expect(stalled).toBeLessThan(TOTAL / 2);
    // Stay paused past the pool's statement_timeout: the export must still finish.
    await new Promise((r) => setTimeout(r, Math.max(0, began + (STATEMENT_TIMEOUT_S + 1) * 1000 - Date.now())));

    let count = first.toString().split('\n').length - 1;
    let tail = '';
    res.on('data', (c: Buffer) => {
      const text = tail + c.toString();
      count += text.split('\n').length - 1;
      tail = text.slice(text.lastIndexOf('\n') + 1);
    });
    res.resume();
    await finished(res); // rejects if the server cuts the export short
    expect(count).toBe(TOTAL);
    expect((await exportedRows()) - before).toBe(TOTAL);
  }, 600_000);

  it('gives its database connection back when the client goes away mid-export', async () => {
    const req = http.get(`${base}/events/export?tenant_id=ex-big`, { headers: token('viewer') });
    const res = await new Promise<http.IncomingMessage>((resolve) => req.once('response', resolve));
    await new Promise((resolve) => res.once('data', resolve));
    req.destroy();
    await eventually(
      async () => (env.h.pool.idleCount === env.h.pool.totalCount ? true : undefined),
      'the export connection to return to the pool',
    );
    const { rows } = await env.h.pool.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'
          AND query LIKE '%json_build_object%'`,
    );
    expect(rows[0].n).toBe(0);
  }, 60_000);
});
