import type { FastifyInstance } from 'fastify';
import { notifyJournaled } from '../../repository/event-journal';
import { createSinkHarness, eventually, type SinkHarness } from '../support/sink';
import { connectSse, domainEvents, listenApp } from '../support/sse';

let h: SinkHarness;
let app: FastifyInstance;
let base: string;

beforeAll(async () => {
  h = await createSinkHarness('stream', { STREAM_MAX_CLIENTS: '3', STREAM_HEARTBEAT_MS: '300' });
  await h.startIngest();
  ({ app, base } = await listenApp(h));
});
afterAll(async () => {
  await app?.close();
  await h?.close();
});

const connect = (query = '', headers: Record<string, string> = {}) => connectSse(base, query, headers);

it('streams journaled events: a connected frame, then domain events with journal fields, and heartbeats', async () => {
  const sse = await connect();
  try {
    expect(sse.status).toBe(200);
    await eventually(async () => sse.frames[0]?.data.kind === 'connected', 'the connected frame');
    await h.send(h.topics.leads, [{ tenant_id: 'acme', name: 'streamed' }], { partition: 1 });
    await eventually(async () => domainEvents(sse).length === 1, 'the event');
    const [frame] = domainEvents(sse);
    expect(frame.data).toMatchObject({
      kind: 'domain_event',
      topic: h.topics.leads,
      partition: 1,
      tenant_id: 'acme',
      replay_count: 0,
      replay_source: null,
      payload: { tenant_id: 'acme', name: 'streamed' },
    });
    expect(frame.id).toBe(String(frame.data.id));
    expect(typeof frame.data.offset).toBe('number');
    await eventually(async () => sse.comments.includes('heartbeat'), 'a heartbeat comment');
  } finally {
    sse.close();
  }
});

it('filters by tenant and topic', async () => {
  const sse = await connect(`?tenant_id=globex&topic=${h.topics.jobs}`);
  try {
    await eventually(async () => sse.frames.length > 0, 'connected');
    await h.send(h.topics.jobs, [
      { tenant_id: 'acme', title: 'not for me' },
      { tenant_id: 'globex', title: 'for me' },
    ]);
    await h.send(h.topics.leads, [{ tenant_id: 'globex', name: 'wrong topic' }]);
    await eventually(async () => domainEvents(sse).length >= 1, 'the globex job');
    await new Promise((r) => setTimeout(r, 1000));
    expect(domainEvents(sse).map((f) => (f.data.payload as { title: string }).title)).toEqual(['for me']);
  } finally {
    sse.close();
  }
});

it('resumes from the journal after a reconnect with Last-Event-ID, with no gap and no repeat', async () => {
  const first = await connect('?tenant_id=resume');
  await eventually(async () => first.frames.length > 0, 'connected');
  await h.send(
    h.topics.leads,
    [1, 2].map((n) => ({ tenant_id: 'resume', n })),
    { partition: 0 },
  ); // one partition: journal order = n order
  await eventually(async () => domainEvents(first).length === 2, 'two events');
  const lastId = domainEvents(first)[1].id!;
  first.close();
  await h.send(
    h.topics.leads,
    [3, 4, 5].map((n) => ({ tenant_id: 'resume', n })),
    { partition: 0 },
  );
  await eventually(
    async () =>
      (await h.pool.query("SELECT count(*)::int AS n FROM event_journal WHERE tenant_id = 'resume'")).rows[0].n === 5,
    'journaled',
  );
  const second = await connect('?tenant_id=resume', { 'last-event-id': lastId });
  try {
    await eventually(async () => domainEvents(second).length === 3, 'the three missed events');
    await h.send(h.topics.leads, [{ tenant_id: 'resume', n: 6 }], { partition: 0 });
    await eventually(async () => domainEvents(second).length === 4, 'the live one after');
    await new Promise((r) => setTimeout(r, 500));
    expect(domainEvents(second).map((f) => (f.data.payload as { n: number }).n)).toEqual([3, 4, 5, 6]);
    const ids = domainEvents(second).map((f) => Number(f.id));
    expect(ids).toEqual([...ids].sort((a, b) => a - b));
    expect(ids[0]).toBeGreaterThan(Number(lastId));
  } finally {
    second.close();
  }
});

it('delivers once a row committed after rows with higher ids (concurrent batches commit out of id order)', async () => {
  const sse = await connect('?tenant_id=late');
  const early = await h.pool.connect();
  try {
    await eventually(async () => sse.frames.length > 0, 'connected');
    const insert = "INSERT INTO event_journal (tenant_id, topic, payload) VALUES ('late', $1, $2) RETURNING id";
    await early.query('BEGIN');
    const low = (await early.query(insert, [h.topics.leads, { tenant_id: 'late', n: 'takes its id first' }])).rows[0]
      .id;
    const high = (await h.pool.query(insert, [h.topics.leads, { tenant_id: 'late', n: 'commits first' }])).rows[0].id;
    await notifyJournaled(h.pool, high);
    await eventually(async () => domainEvents(sse).length === 1, 'the row that committed first');
    await notifyJournaled(early, low);
    await early.query('COMMIT');
    await eventually(async () => domainEvents(sse).length === 2, 'the row that committed late');
    await new Promise((r) => setTimeout(r, 500));
    expect(domainEvents(sse).map((f) => Number(f.id))).toEqual([high, low]);
  } finally {
    early.release();
    sse.close();
  }
});

it('refuses clients past the cap with 503, and counts connected clients', async () => {
  const open = await Promise.all([connect(), connect(), connect()]);
  try {
    await eventually(
      async () =>
        (await h.metrics.registry.getSingleMetricAsString('crm_events_sse_clients')).includes(
          'crm_events_sse_clients 3',
        ),
      'three clients',
    );
    const res = await fetch(`${base}/crm-events`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { message: string }).message).toMatch(/limit of 3 clients/);
  } finally {
    open.forEach((s) => s.close());
  }
  await eventually(
    async () =>
      (await h.metrics.registry.getSingleMetricAsString('crm_events_sse_clients')).includes('crm_events_sse_clients 0'),
    'clients to leave',
  );
});

it('serves service info on / and liveness on /healthz', async () => {
  expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ ok: true });
  expect(await (await fetch(`${base}/`)).json()).toMatchObject({
    ok: true,
    service: 'crm-events-sink',
    status: 'ready',
    topics: h.config.kafka.topics,
  });
});
