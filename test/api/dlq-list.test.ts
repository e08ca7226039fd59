import type { FastifyInstance } from 'fastify';
import { listDlq } from '../../repository/event-dlq';
import { buildTestApp, json } from '../support/api';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';

/**
 * Issue 11, point 6: GET /dlq reads only the columns it returns; a page of 1000 dead letters never drags their
 * payloads, raw values and bytes out of Postgres only to drop them.
 */
let h: SinkHarness;
let app: FastifyInstance;

beforeAll(async () => {
  h = await createSinkHarness('dlq-list');
  await h.startIngest();
  // Real dead letters, as ingest writes them: a value that is not JSON and a JSON value with a bulky payload.
  await h.send(h.topics.leads, ['{not json' + 'x'.repeat(10_000), JSON.stringify([{ bulky: 'y'.repeat(10_000) }])]);
  await eventually(async () => (await h.dlqCount()) === 2, 'two dead letters');
  app = await buildTestApp(h);
});
afterAll(async () => {
  await app?.close();
  await h?.close();
});

it('the listing query selects exactly the fields GET /dlq returns, and no payload or raw bytes', async () => {
  const res = await app.inject({ method: 'GET', url: '/dlq?limit=1000' });
  expect(res.statusCode).toBe(200);
  const items = json<Record<string, unknown>[]>(res);
  expect(items).toHaveLength(2);
  const rows = await listDlq(h.pool, { limit: 1000 });
  for (const [i, row] of rows.entries()) {
    expect(Object.keys(row).sort()).toEqual(Object.keys(items[i]).sort());
  }
  for (const column of ['payload', 'payload_text', 'raw_value', 'raw_bytes', 'kafka_key_bytes', 'kafka_headers']) {
    expect(rows[0]).not.toHaveProperty(column);
  }
});
