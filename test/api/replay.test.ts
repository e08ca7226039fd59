import { getEventListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { ensureTopics } from '../../shared/kafka';
import { CrmEventId, CrmReplayKind, CrmReplaySource, CrmTenantId, CrmTopic } from '../../workflows/search-attributes';
import {
  buildTestApp,
  closedWorkflow,
  createApiEnv,
  json,
  produceJournaled,
  publishedBy,
  replayRowsOf,
  type ApiEnv,
  type WorkflowDetail,
} from '../support/api';
import { uniqueSuffix } from '../support/env';
import { eventually } from '../support/sink';

/**
 * The replay API end to end: events produced through Kafka and journaled by the real consumer, replays started by
 * the API as workflows on the dev server, run by a real worker, republished to Kafka and journaled again.
 */
let env: ApiEnv;
let leads: string;
let jobs: string;
const extraTopics: string[] = [];

beforeAll(async () => {
  // Auth is off here (auth.test.ts covers it); the per-client replay budget is raised so this file never hits it.
  // Pages of 2 events, so that ranges of a few events already take several pages.
  env = await createApiEnv('api-replay', { env: { API_REPLAY_RATE_LIMIT_PER_MINUTE: '10000', REPLAY_PAGE_SIZE: '2' } });
  ({ leads, jobs } = env.h.topics);
});

afterAll(async () => {
  if (extraTopics.length) {
    const admin = env.h.kafka.admin();
    await admin.connect();
    await admin.deleteTopics({ topics: extraTopics }).catch(() => undefined);
    await admin.disconnect();
  }
  await env?.close();
});

// X-Requested-By: the custom header a cross-site form cannot send (api/plugins/browser-guard.ts), as clients send it.
const post = (url: string, body?: unknown, headers: Record<string, string> = {}, app = env.app) =>
  app.inject({
    method: 'POST',
    url,
    headers: { 'x-requested-by': 'test', ...headers },
    ...(body === undefined ? {} : { payload: body as object }),
  });
const get = (url: string, app = env.app) => app.inject({ method: 'GET', url });

/** A journal row inserted directly, for states the consumer never produces by itself (e.g. a third-hop replay). */
async function insertReplayRow(tenant: string, topic: string, hops: number, fromId: number): Promise<number> {
  const payload = {
    tenant_id: tenant,
    name: `hop ${hops}`,
    _replayed_from_event_id: fromId,
    _replay_source: 'batch',
    _replay_id: `seeded-${hops}-${fromId}-${Date.now()}`,
    _replay_count: hops,
  };
  const { rows } = await env.h.pool.query<{ id: string }>(
    `INSERT INTO event_journal (tenant_id, topic, payload, replay_count, replay_source)
     VALUES ($1, $2, $3, $4, 'batch') RETURNING id`,
    [tenant, topic, payload, hops],
  );
  return Number(rows[0].id);
}

/** The database's clock: received_at is stamped by it, so windows are taken from it too. */
const dbNow = async (offsetMs = 0) =>
  new Date((await env.h.pool.query<{ t: Date }>('SELECT now() AS t')).rows[0].t.getTime() + offsetMs).toISOString();
const ascending = (ids: number[]) => [...ids].sort((a, b) => a - b);

interface EventSummary {
  id: number;
  tenant_id: string;
  topic: string;
  replay_count: number;
  replay_source: string | null;
}
interface EventDetail extends EventSummary {
  payload: Record<string, unknown>;
  kafka_key: string | null;
  lineage: { replayed_from: EventSummary | null; replays: EventSummary[] };
}
interface DlqEntry {
  id: number;
  status: string;
  attempts: number;
  last_error: string | null;
  resolved_at: string | null;
  resolved_event_id: number | null;
}

const auditOf = async (workflowId: string) =>
  (await env.h.pool.query('SELECT * FROM replay_audit WHERE workflow_id = $1', [workflowId])).rows[0];

describe('POST /replay/:id', () => {
  it('republishes through Kafka: 200 with the result, and a journal row with lineage within 2 s', async () => {
    const [id] = await produceJournaled(env.h, leads, [{ tenant_id: 'acme', name: 'Ada' }], { key: 'lead-ada' });
    const started = Date.now();
    const res = await post(`/replay/${id}`);
    expect(res.statusCode).toBe(200);
    const body = json(res);
    expect(body).toEqual({
      status: 'replayed',
      event_id: id,
      topic: leads,
      tenant_id: 'acme',
      workflow_id: expect.stringMatching(new RegExp(`^replay-event-${id}-`)),
      replay_count: 1,
    });
    const [row] = await eventually(
      async () => {
        const rows = await replayRowsOf(env.h, body.workflow_id as string);
        return rows.length ? rows : undefined;
      },
      'the replay to be journaled',
      5000,
      25,
    );
    const elapsed = Date.now() - started;
    expect(elapsed).toBeLessThanOrEqual(2000);

    const { rows } = await env.h.pool.query('SELECT * FROM event_journal WHERE id = $1', [row.id]);
    expect(rows[0]).toMatchObject({
      tenant_id: 'acme',
      topic: leads,
      replay_count: 1,
      replay_source: 'operator_api',
      kafka_key: 'lead-ada',
    });
    expect(rows[0].payload).toMatchObject({
      name: 'Ada',
      _replayed_from_event_id: id,
      _replay_source: 'operator_api',
      _replay_id: body.workflow_id,
      _replay_count: 1,
    });
    const [message] = await publishedBy(env.h, leads, body.workflow_id as string);
    expect(message).toMatchObject({
      _key: 'lead-ada', // keyed like the original, so it lands in the same partition
      // The original's headers (it had none) plus lineage and its proof; nothing invented (docs/integrity.md, 6).
      _headers: {
        'x-replay-proof': expect.any(String),
        'x-replayed-from-event-id': String(id),
        'x-replay-source': 'operator_api',
        'x-replay-id': body.workflow_id,
        'x-replay-count': '1',
      },
    });
    expect(await auditOf(body.workflow_id as string)).toMatchObject({
      kind: 'single',
      source: 'operator_api',
      event_id: id,
      status: 'completed',
      published: 1,
    });
  });

  it('runs a workflow the Temporal client finds by its search attributes', async () => {
    const [id] = await produceJournaled(env.h, jobs, [{ tenant_id: 'globex', name: 'Job 1' }]);
    const res = await post(`/replay/${id}`);
    expect(res.statusCode).toBe(200);
    const workflowId = json(res).workflow_id as string;

    // Visibility on the dev server lags the workflow by up to a second or so.
    const listed = await eventually(async () => {
      const found = [];
      for await (const wf of env.client.workflow.list({
        query: `CrmReplayKind='single' AND WorkflowId='${workflowId}'`,
      }))
        found.push(wf);
      return found.length ? found : undefined;
    }, `${workflowId} in the visibility store`);
    expect(listed).toHaveLength(1);
    const [wf] = listed;
    expect(wf.type).toBe('replayEventWorkflow');
    expect(wf.taskQueue).toBe(env.taskQueue);
    const attrs = wf.typedSearchAttributes;
    expect(attrs.get(CrmEventId)).toBe(String(id));
    expect(attrs.get(CrmTenantId)).toBe('globex');
    expect(attrs.get(CrmTopic)).toBe(jobs);
    expect(attrs.get(CrmReplayKind)).toBe('single');
    expect(attrs.get(CrmReplaySource)).toBe('operator_api');
    expect(await wf.memo).toMatchObject({ request: { eventId: id, source: 'operator_api' } });

    // The attribute an operator would search by in the UI finds the same workflow.
    const byEvent = await eventually(async () => {
      const ids: string[] = [];
      for await (const w of env.client.workflow.list({ query: `CrmEventId='${id}' AND TaskQueue='${env.taskQueue}'` }))
        ids.push(w.workflowId);
      return ids.length ? ids : undefined;
    }, 'the workflow by CrmEventId');
    expect(byEvent).toEqual([workflowId]);
  });

  it('answers 404 for an id that is not in the journal, and starts nothing', async () => {
    const res = await post('/replay/999999');
    expect(res.statusCode).toBe(404);
    expect(json(res)).toEqual({ statusCode: 404, error: 'Not Found', message: expect.stringContaining('999999') });
    const { rows } = await env.h.pool.query(
      "SELECT 1 FROM replay_audit WHERE workflow_id LIKE 'replay-event-999999-%'",
    );
    expect(rows).toHaveLength(0);
  });

  it('counts hops: a second-hop replay becomes hop 3, and a row already 3 hops away is refused with 409', async () => {
    const [original] = await produceJournaled(env.h, leads, [{ tenant_id: 'acme', name: 'Hopper' }]);
    const hop2 = await insertReplayRow('acme', leads, 2, original);
    const ok = await post(`/replay/${hop2}`);
    expect(ok.statusCode).toBe(200);
    expect(json(ok)).toMatchObject({ status: 'replayed', event_id: hop2, replay_count: 3 });
    const [hop3] = await eventually(async () => {
      const rows = await replayRowsOf(env.h, json(ok).workflow_id as string);
      return rows.length ? rows : undefined;
    }, 'the third hop to be journaled');
    expect(hop3).toMatchObject({ from_id: hop2, replay_count: 3 });

    const refused = await post(`/replay/${hop3.id}`);
    expect(refused.statusCode).toBe(409);
    const body = json(refused);
    expect(body).toMatchObject({ statusCode: 409, error: 'Conflict' });
    expect(body.message).toContain('REPLAY_MAX_HOPS');
    expect(body.message).toContain(String(hop3.id));
    const { rows } = await env.h.pool.query(
      "SELECT status, error FROM replay_audit WHERE event_id = $1 AND kind = 'single'",
      [hop3.id],
    );
    expect(rows).toEqual([{ status: 'failed', error: expect.stringContaining('REPLAY_MAX_HOPS') }]);
    await sleep(1000);
    const { rows: fourth } = await env.h.pool.query('SELECT 1 FROM event_journal WHERE replay_count > 3');
    expect(fourth).toHaveLength(0);
  });
});

describe('POST /replay/batch', () => {
  it('leaves no listener per start on the API-wide stop signal (one per request, before: the SDK never removes its own)', async () => {
    // Each start runs under the signal a stop aborts (requestsAbandoned); the Temporal client hangs a listener on the
    // signal it is given for every call and never takes it off, each holding its call: on the API's one signal that
    // grew with every replay request for the life of the process (Node's MaxListenersExceededWarning at 11).
    const [id] = await produceJournaled(env.h, leads, [{ tenant_id: 'listeners-t', n: 1 }]);
    const before = getEventListeners(env.app.requestsAbandoned, 'abort').length;
    for (let i = 0; i < 12; i++) expect((await post('/replay/batch', { ids: [id] })).statusCode).toBe(202);
    expect(getEventListeners(env.app.requestsAbandoned, 'abort').length).toBe(before);
  });

  it('answers 202, reports unknown ids in the result and republishes each known id exactly once', async () => {
    const ids = await produceJournaled(env.h, leads, [
      { tenant_id: 'batch-t', n: 1 },
      { tenant_id: 'batch-t', n: 2 },
      { tenant_id: 'batch-t', n: 3 },
    ]);
    const unknown = [999991, 999992];
    const res = await post('/replay/batch', { ids: [...ids, ...unknown, ids[0]] }); // a repeated id is replayed once
    expect(res.statusCode).toBe(202);
    const accepted = json(res);
    expect(accepted).toEqual({
      status: 'accepted',
      workflow_id: expect.stringMatching(/^replay-batch-/),
      status_url: `/replays/${accepted.workflow_id}`,
    });
    const workflowId = accepted.workflow_id as string;

    const detail = await closedWorkflow(env.app, workflowId);
    expect(detail.workflow_status).toBe('COMPLETED');
    expect(detail.result).toEqual({
      status: 'completed',
      workflow_id: workflowId,
      requested: 5,
      published: 3,
      unknown_ids: unknown,
      refused: [],
      erased: [],
    });
    expect(detail.audit).toMatchObject({
      kind: 'batch',
      source: 'batch',
      status: 'completed',
      matched: 3,
      published: 3,
    });

    const rows = await eventually(async () => {
      const r = await replayRowsOf(env.h, workflowId);
      return r.length >= 3 ? r : undefined;
    }, 'three batch replays journaled');
    expect(ascending(rows.map((r) => r.from_id))).toEqual(ascending(ids));
    expect(rows.every((r) => r.replay_source === 'batch' && r.replay_count === 1 && r.tenant_id === 'batch-t')).toBe(
      true,
    );
    const sent = await publishedBy(env.h, leads, workflowId);
    expect(ascending(sent.map((m) => m._replayed_from_event_id as number))).toEqual(ascending(ids));
    expect(await replayRowsOf(env.h, workflowId)).toHaveLength(3);
  });
});

describe('POST /replay/range', () => {
  it('republishes exactly the events matching tenant and topic, once each', async () => {
    const start = await dbNow();
    const aLeads = await produceJournaled(
      env.h,
      leads,
      [1, 2, 3].map((n) => ({ tenant_id: 'range-a', n })),
    );
    const aJobs = await produceJournaled(
      env.h,
      jobs,
      [1, 2].map((n) => ({ tenant_id: 'range-a', n })),
    );
    await produceJournaled(
      env.h,
      leads,
      [1, 2].map((n) => ({ tenant_id: 'range-b', n })),
    );
    const end = await dbNow(1);

    const res = await post('/replay/range', { start, end, tenant_id: 'range-a', topic: leads });
    expect(res.statusCode).toBe(202);
    const workflowId = json(res).workflow_id as string;
    expect(workflowId).toMatch(/^replay-range-/);
    const detail = await closedWorkflow(env.app, workflowId);
    expect(detail.workflow_status).toBe('COMPLETED');
    // REPLAY_PAGE_SIZE=2: three events take two pages.
    expect(detail.result).toMatchObject({ status: 'completed', matched: 3, published: 3, failed: 0, pages: 2 });
    expect(detail.audit).toMatchObject({ kind: 'range', status: 'completed', matched: 3, published: 3 });
    expect(detail.audit!.filter).toMatchObject({ tenantId: 'range-a', topic: leads, includeReplays: false });

    const rows = await eventually(async () => {
      const r = await replayRowsOf(env.h, workflowId);
      return r.length >= 3 ? r : undefined;
    }, 'three range replays journaled');
    // The originals had no key, and a replay keeps the key as it was (none): the replays spread over partitions, so
    // the journal holds them in consumption order, not necessarily in id order.
    expect(ascending(rows.map((r) => r.from_id))).toEqual(ascending(aLeads));
    expect(new Set(rows.map((r) => r.replay_source))).toEqual(new Set(['range']));
    const sent = (await publishedBy(env.h, leads, workflowId)).map((m) => m._replayed_from_event_id as number);
    expect(ascending(sent)).toEqual(ascending(aLeads));
    expect(await publishedBy(env.h, jobs, workflowId)).toEqual([]);

    // Replays are not originals: the same range again selects the same three events, not their replays too.
    const again = await post('/replay/range', { start, end, tenant_id: 'range-a', dry_run: true });
    expect(again.statusCode).toBe(200);
    expect(json(again)).toMatchObject({ matched: aLeads.length + aJobs.length });
  });

  it('with dry_run answers 200 with counts by topic and tenant and publishes nothing', async () => {
    const start = await dbNow();
    await produceJournaled(
      env.h,
      leads,
      [1, 2, 3].map((n) => ({ tenant_id: 'dry-a', n })),
    );
    await produceJournaled(
      env.h,
      jobs,
      [1, 2].map((n) => ({ tenant_id: 'dry-a', n })),
    );
    await produceJournaled(env.h, jobs, [{ tenant_id: 'dry-b' }]);
    const end = await dbNow(1);
    const journalBefore = await env.h.journalCount();

    const res = await post('/replay/range', { start, end, tenant_id: 'dry-a', dry_run: true });
    expect(res.statusCode).toBe(200);
    const body = json(res);
    expect(body).toEqual({
      status: 'dry_run',
      workflow_id: expect.stringMatching(/^replay-range-dryrun-/),
      matched: 5,
      by_topic: { [leads]: 3, [jobs]: 2 },
      by_tenant: { 'dry-a': 5 },
      // Nothing of this window is archived (cold replay counts archived events apart too).
      archived: 0,
      archived_segments: [],
      sample: expect.any(Array),
    });
    // The sample: every match here (fewer than 10), in id order, with its payload.
    const sample = body.sample as { id: number; tenant_id: string; payload: { n: number } }[];
    expect(sample.map((r) => r.id)).toEqual([...sample.map((r) => r.id)].sort((a, b) => a - b));
    expect(sample.map((r) => r.tenant_id)).toEqual(Array(5).fill('dry-a'));
    expect(sample.map((r) => r.payload.n).sort()).toEqual([1, 1, 2, 2, 3]);
    const all = await post('/replay/range', { start, end, dry_run: true });
    expect(json(all)).toMatchObject({ matched: 6, by_tenant: { 'dry-a': 5, 'dry-b': 1 } });

    expect(await auditOf(body.workflow_id as string)).toMatchObject({
      kind: 'range',
      status: 'completed',
      matched: 5,
      published: 0,
    });
    expect(await publishedBy(env.h, leads, body.workflow_id as string)).toEqual([]);
    expect(await publishedBy(env.h, jobs, body.workflow_id as string)).toEqual([]);
    expect(await env.h.journalCount()).toBe(journalBefore);
  });
});

describe('Idempotency-Key', () => {
  it('makes a repeated replay request return the first workflow instead of replaying again', async () => {
    const [id] = await produceJournaled(env.h, leads, [{ tenant_id: 'idem', name: 'Once' }]);
    // Keys are unique per run: workflow ids live on the dev server across test runs, and event ids repeat per database.
    const key = { 'idempotency-key': `retry-of-${id}-${uniqueSuffix()}` };
    const first = await post(`/replay/${id}`, undefined, key);
    const second = await post(`/replay/${id}`, undefined, key);
    expect(first.statusCode).toBe(200);
    expect(second.statusCode).toBe(200);
    const workflowId = json(first).workflow_id as string;
    expect(workflowId).toMatch(new RegExp(`^replay-event-${id}-idem-`));
    expect(json(second)).toEqual(json(first));

    // Two at the same time with another key: one workflow between them.
    const concurrentKey = { 'idempotency-key': `concurrent-${id}-${uniqueSuffix()}` };
    const [a, b] = await Promise.all([
      post(`/replay/${id}`, undefined, concurrentKey),
      post(`/replay/${id}`, undefined, concurrentKey),
    ]);
    expect([a.statusCode, b.statusCode]).toEqual([200, 200]);
    expect(json(a).workflow_id).toBe(json(b).workflow_id);
    expect(json(a).workflow_id).not.toBe(workflowId);

    // Without a key, a repeat is a new replay.
    const fresh = await post(`/replay/${id}`);
    expect(json(fresh).workflow_id).not.toBe(workflowId);

    await sleep(1500); // anything that was published twice would have been journaled by now
    const { rows } = await env.h.pool.query<{ replay_id: string; n: number }>(
      `SELECT payload->>'_replay_id' AS replay_id, count(*)::int AS n FROM event_journal
        WHERE replay_count > 0 AND payload->>'_replayed_from_event_id' = $1 GROUP BY 1 ORDER BY 1`,
      [String(id)],
    );
    expect(rows).toHaveLength(3);
    expect(rows.every((r) => r.n === 1)).toBe(true);
    const sent =
      (await publishedBy(env.h, leads, workflowId)).length +
      (await publishedBy(env.h, leads, json(a).workflow_id as string)).length;
    expect(sent).toBe(2);
  });

  it('dedupes batch starts too, running and completed', async () => {
    const ids = await produceJournaled(env.h, jobs, [{ tenant_id: 'idem', n: 1 }]);
    const headers = { 'idempotency-key': `batch-${uniqueSuffix()}` };
    const first = await post('/replay/batch', { ids }, headers);
    const second = await post('/replay/batch', { ids }, headers);
    expect([first.statusCode, second.statusCode]).toEqual([202, 202]);
    const workflowId = json(first).workflow_id as string;
    expect(json(second).workflow_id).toBe(workflowId);
    expect((await closedWorkflow(env.app, workflowId)).result).toMatchObject({ published: 1 });
    const third = await post('/replay/batch', { ids }, headers); // after completion: still the same one
    expect(json(third).workflow_id).toBe(workflowId);
    await sleep(1000);
    expect((await replayRowsOf(env.h, workflowId)).map((r) => r.from_id)).toEqual(ids);
  });

  it('refuses a key reused for a different request instead of answering with the first one', async () => {
    const ids = await produceJournaled(env.h, jobs, [
      { tenant_id: 'idem', n: 1 },
      { tenant_id: 'idem', n: 2 },
    ]);
    const headers = { 'idempotency-key': `reused-${uniqueSuffix()}` };
    const first = await post('/replay/batch', { ids: [ids[0]] }, headers);
    expect(first.statusCode).toBe(202);
    await closedWorkflow(env.app, json(first).workflow_id as string);
    // Same key, other ids: answering 202 with the first workflow would mean ids[1] is silently never replayed.
    const other = await post('/replay/batch', { ids: [ids[1]] }, headers);
    expect({ status: other.statusCode, body: json(other) }).toEqual({
      status: 422,
      body: { statusCode: 422, error: expect.any(String), message: expect.stringMatching(/Idempotency-Key/) },
    });
  });
});

describe('GET /events', () => {
  it('filters by tenant, topic, time and replay flag, and pages with a keyset cursor', async () => {
    const before = await dbNow();
    const leadIds = await produceJournaled(
      env.h,
      leads,
      [1, 2, 3, 4, 5].map((n) => ({ tenant_id: 'page-t', n })),
    );
    const jobIds = await produceJournaled(
      env.h,
      jobs,
      [1, 2].map((n) => ({ tenant_id: 'page-t', n })),
    );
    const all = [...leadIds, ...jobIds].sort((a, b) => b - a);

    const seen: number[] = [];
    let cursor: number | null = null;
    let pages = 0;
    do {
      const res = await get(`/events?tenant_id=page-t&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.statusCode).toBe(200);
      const page = json<{ items: { id: number; tenant_id: string }[]; next_cursor: number | null }>(res);
      expect(page.items.length).toBeLessThanOrEqual(2);
      expect(page.items.every((e) => e.tenant_id === 'page-t')).toBe(true);
      seen.push(...page.items.map((e) => e.id));
      cursor = page.next_cursor;
      pages += 1;
    } while (cursor !== null && pages < 10);
    expect(seen).toEqual(all); // newest first, nothing missed, nothing twice
    expect(pages).toBe(4);

    const byTopic = json<{ items: { id: number; topic: string }[] }>(
      await get(`/events?tenant_id=page-t&topic=${jobs}`),
    );
    expect(byTopic.items.map((e) => e.id)).toEqual(ascending(jobIds).reverse());
    const future = json<{ items: unknown[] }>(
      await get(`/events?tenant_id=page-t&since=${new Date(Date.now() + 60_000).toISOString()}`),
    );
    expect(future.items).toEqual([]);
    const window = json<{ items: { id: number }[] }>(
      await get(`/events?tenant_id=page-t&since=${before}&until=${await dbNow(1)}`),
    );
    expect(window.items.map((e) => e.id)).toEqual(all);

    const replayed = await post(`/replay/${leadIds[0]}`);
    expect(replayed.statusCode).toBe(200);
    const replays = await eventually(async () => {
      const body = json<{ items: { id: number; replay_count: number; replay_source: string }[] }>(
        await get('/events?tenant_id=page-t&replayed=true'),
      );
      return body.items.length ? body.items : undefined;
    }, 'the replayed row to be listed');
    expect(replays).toHaveLength(1);
    expect(replays[0]).toMatchObject({ replay_count: 1, replay_source: 'operator_api' });
    const originals = json<{ items: { id: number }[] }>(await get('/events?tenant_id=page-t&replayed=false'));
    expect(originals.items.map((e) => e.id)).toEqual(all);
  });

  it('GET /events/latest returns the newest rows first', async () => {
    const ids = await produceJournaled(env.h, leads, [{ tenant_id: 'latest', n: 1 }]);
    const res = await get('/events/latest?limit=5');
    expect(res.statusCode).toBe(200);
    const rows = json<{ id: number }[]>(res);
    expect(rows.length).toBeLessThanOrEqual(5);
    expect(rows.map((r) => r.id)).toEqual([...rows.map((r) => r.id)].sort((a, b) => b - a));
    expect(rows.map((r) => r.id)).toContain(ids[0]);
  });

  it('GET /events/:id shows the payload and the lineage both ways', async () => {
    const [id] = await produceJournaled(env.h, jobs, [{ tenant_id: 'lineage', name: 'Root' }], { key: 'root-key' });
    const first = json(await post(`/replay/${id}`));
    const [replay] = await eventually(async () => {
      const r = await replayRowsOf(env.h, first.workflow_id as string);
      return r.length ? r : undefined;
    }, 'the replay journaled');

    const original = json<EventDetail>(await get(`/events/${id}`));
    expect(original).toMatchObject({
      id,
      tenant_id: 'lineage',
      topic: jobs,
      replay_count: 0,
      replay_source: null,
      kafka_key: 'root-key',
    });
    expect(original.payload).toMatchObject({ name: 'Root' });
    expect(original.lineage.replayed_from).toBeNull();
    expect(original.lineage.replays.map((r) => r.id)).toEqual([replay.id]);

    const second = json(await post(`/replay/${replay.id}`));
    const [hop2] = await eventually(async () => {
      const r = await replayRowsOf(env.h, second.workflow_id as string);
      return r.length ? r : undefined;
    }, 'the second hop journaled');

    const middle = json<EventDetail>(await get(`/events/${replay.id}`));
    expect(middle).toMatchObject({ id: replay.id, replay_count: 1, replay_source: 'operator_api' });
    expect(middle.payload).toMatchObject({ name: 'Root', _replayed_from_event_id: id, _replay_id: first.workflow_id });
    expect(middle.lineage.replayed_from).toMatchObject({ id, replay_count: 0 });
    expect(middle.lineage.replays.map((r) => r.id)).toEqual([hop2.id]);
    const last = json<EventDetail>(await get(`/events/${hop2.id}`));
    expect(last.lineage.replayed_from).toMatchObject({ id: replay.id, replay_count: 1 });
    expect(last.replay_count).toBe(2);

    expect((await get('/events/999999')).statusCode).toBe(404);
  });
});

describe('GET /replays', () => {
  it('lists audits newest first, by kind and status, with a cursor', async () => {
    const [id] = await produceJournaled(env.h, leads, [{ tenant_id: 'audit-t' }]);
    const done = json(await post(`/replay/${id}`)).workflow_id as string;
    const refusedId = await insertReplayRow('audit-t', leads, 3, id);
    expect((await post(`/replay/${refusedId}`)).statusCode).toBe(409);
    const failed = (await env.h.pool.query('SELECT workflow_id FROM replay_audit WHERE event_id = $1', [refusedId]))
      .rows[0].workflow_id;

    type Audit = { id: number; workflow_id: string; kind: string; status: string; event_id: number | null };
    const singles = json<{ items: Audit[]; next_cursor: number | null }>(await get('/replays?kind=single'));
    expect(singles.items.every((a) => a.kind === 'single')).toBe(true);
    expect(singles.items[0].workflow_id).toBe(failed); // newest first
    expect(singles.items.find((a) => a.workflow_id === done)).toMatchObject({ status: 'completed', event_id: id });

    const failures = json<{ items: Audit[] }>(await get('/replays?status=failed'));
    expect(failures.items.map((a) => a.workflow_id)).toContain(failed);
    expect(failures.items.every((a) => a.status === 'failed')).toBe(true);
    expect(failures.items.map((a) => a.workflow_id)).not.toContain(done);

    const batches = json<{ items: Audit[] }>(await get('/replays?kind=batch'));
    expect(batches.items.length).toBeGreaterThan(0);
    expect(batches.items.every((a) => a.kind === 'batch')).toBe(true);

    const seen: number[] = [];
    let cursor: number | null = null;
    for (let page = 0; page < 100; page++) {
      const res = await get(`/replays?limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      const body: { items: Audit[]; next_cursor: number | null } = json(res);
      seen.push(...body.items.map((a) => a.id));
      cursor = body.next_cursor;
      if (cursor === null) break;
    }
    const { rows } = await env.h.pool.query<{ id: string }>('SELECT id FROM replay_audit ORDER BY id DESC');
    expect(seen).toEqual(rows.map((r) => Number(r.id)));

    expect((await get('/replays/replay-event-does-not-exist')).statusCode).toBe(404);
  });
});

describe('replay controls', () => {
  it('pauses, resumes and cancels a slow range replay, and refuses to control a closed one with 409', async () => {
    const target = `${leads}.slow`;
    extraTopics.push(target);
    await ensureTopics(env.h.kafka, [target], 1);
    const start = await dbNow();
    await produceJournaled(
      env.h,
      leads,
      Array.from({ length: 20 }, (_, n) => ({ tenant_id: 'slow', n })),
    );
    const end = await dbNow(1);
    // A target that ingest does not read, so the replays stay out of the journal: REPLAY_TARGET_TOPICS must list it.
    const { config } = env.h;
    const app = await buildTestApp(env.h, {
      ...config,
      replay: { ...config.replay, targetTopics: [...config.kafka.topics, target] },
    });
    try {
      const res = await post(
        '/replay/range',
        { start, end, tenant_id: 'slow', target_topic: target, max_events_per_second: 2 },
        {},
        app,
      );
      expect(res.statusCode).toBe(202);
      const workflowId = json(res).workflow_id as string;
      const progress = async () => {
        const body = json<WorkflowDetail>(await get(`/replays/${workflowId}`, app));
        return body.progress;
      };
      await eventually(async () => ((await progress())?.published ?? 0) >= 1, 'the first page published');

      const paused = await post(`/replays/${workflowId}/pause`, undefined, {}, app);
      expect(paused.statusCode).toBe(202);
      expect(json(paused)).toEqual({ workflow_id: workflowId, action: 'pause' });
      await eventually(async () => (await progress())?.status === 'paused', 'the replay to report paused');
      await sleep(1500); // a page already in flight when the signal arrived may still land
      const held = (await progress())!.published;
      await sleep(2000);
      expect((await progress())!).toMatchObject({ status: 'paused', published: held });
      expect(held).toBeLessThan(20);

      expect((await post(`/replays/${workflowId}/resume`, undefined, {}, app)).statusCode).toBe(202);
      await eventually(async () => ((await progress())?.published ?? 0) > held, 'publishing to go on after resume');

      const cancelled = await post(`/replays/${workflowId}/cancel`, undefined, {}, app);
      expect(cancelled.statusCode).toBe(202);
      const detail = await closedWorkflow(app, workflowId);
      expect(detail.workflow_status).toBe('CANCELLED');
      const audit = await eventually(async () => {
        const a = await auditOf(workflowId);
        return a?.status === 'cancelled' ? a : undefined;
      }, 'the audit to say cancelled');
      expect(audit.error).toBe('cancelled by operator');
      expect(audit.published).toBeLessThan(20);

      for (const action of ['pause', 'resume', 'cancel']) {
        const again = await post(`/replays/${workflowId}/${action}`, undefined, {}, app);
        expect(again.statusCode).toBe(409);
        expect(json(again).message).toContain('CANCELLED');
      }
    } finally {
      await app.close();
    }
  });

  it('answers 409 to controls on a completed replay and 404 on an unknown one', async () => {
    const [id] = await produceJournaled(env.h, leads, [{ tenant_id: 'ctl' }]);
    const workflowId = json(await post(`/replay/${id}`)).workflow_id as string;
    for (const action of ['pause', 'resume', 'cancel']) {
      const res = await post(`/replays/${workflowId}/${action}`);
      expect(res.statusCode).toBe(409);
      expect(json(res).message).toMatch(/COMPLETED, not running/);
    }
    expect((await post('/replays/replay-range-nope/pause')).statusCode).toBe(404);
  });
});

describe('dead letters', () => {
  it('GET /dlq lists what the consumer dead-lettered, filtered by status, topic and tenant, with a cursor header', async () => {
    const dlqBefore = await env.h.dlqCount();
    await env.h.send(leads, ['{"not json', '{"also": not json}'], { headers: { 'x-tenant-id': 'dlq-t' } });
    await env.h.send(jobs, [{ name: 'no tenant anywhere' }]);
    await eventually(async () => (await env.h.dlqCount()) >= dlqBefore + 3, 'three dead letters');

    type Entry = { id: number; topic: string; tenant_id: string | null; reason: string; error: string; status: string };
    const byTopic = json<Entry[]>(await get(`/dlq?topic=${leads}`));
    expect(byTopic.length).toBeGreaterThanOrEqual(2);
    expect(byTopic.every((e) => e.topic === leads && e.reason === 'invalid_json')).toBe(true);
    const jobsEntries = json<Entry[]>(await get(`/dlq?topic=${jobs}`));
    expect(jobsEntries[0]).toMatchObject({ reason: 'missing_tenant', tenant_id: null, status: 'pending' });
    expect(jobsEntries[0].error).toMatch(/tenant/);
    const byTenant = json<Entry[]>(await get('/dlq?tenant_id=dlq-t'));
    expect(byTenant).toHaveLength(2);
    expect(json<Entry[]>(await get('/dlq?status=pending')).length).toBeGreaterThanOrEqual(3);
    expect(json<Entry[]>(await get('/dlq?status=parked'))).toEqual([]);

    const first = await get('/dlq?tenant_id=dlq-t&limit=1');
    const next = first.headers['x-next-cursor'];
    expect(next).toBe(String(json<Entry[]>(first)[0].id));
    const second = await get(`/dlq?tenant_id=dlq-t&limit=1&cursor=${next}`);
    expect(json<Entry[]>(second)).toHaveLength(1);
    expect(json<Entry[]>(second)[0].id).toBeLessThan(Number(next));
    expect(second.headers['x-next-cursor']).toBeUndefined();
  });

  it('POST /dlq/:id/retry journals a fixable entry and marks it resolved with the journal id', async () => {
    const insert = async (payload: Record<string, unknown>, tenant: string | null) =>
      Number(
        (
          await env.h.pool.query<{ id: string }>(
            `INSERT INTO event_dlq (topic, tenant_id, payload, error, reason)
             VALUES ($1, $2, $3, 'Postgres unavailable: connection refused', 'db_error') RETURNING id`,
            [leads, tenant, payload],
          )
        ).rows[0].id,
      );
    const fixable = await insert({ tenant_id: 'dlq-fix', name: 'Recovered' }, 'dlq-fix');
    const res = await post(`/dlq/${fixable}/retry`);
    expect(res.statusCode).toBe(200);
    expect(json(res)).toMatchObject({
      status: 'completed',
      workflow_id: expect.stringMatching(new RegExp(`^dlq-retry-${fixable}-`)),
      attempted: 1,
      resolved: 1,
      retrying: 0,
      parked: 0,
    });
    const [entry] = json<DlqEntry[]>(await get('/dlq?status=resolved&tenant_id=dlq-fix'));
    expect(entry).toMatchObject({ id: fixable, status: 'resolved', attempts: 1, last_error: null });
    expect(entry.resolved_at).toEqual(expect.any(String));
    const journaled = json<EventDetail>(await get(`/events/${entry.resolved_event_id}`));
    expect(journaled).toMatchObject({ tenant_id: 'dlq-fix', topic: leads, replay_count: 0 });
    expect(journaled.payload).toEqual({ tenant_id: 'dlq-fix', name: 'Recovered' });

    const again = await post(`/dlq/${fixable}/retry`);
    expect(again.statusCode).toBe(409);
    expect(json(again).message).toContain('already resolved');

    const unfixable = await insert({ name: 'still no tenant' }, null);
    const failed = await post(`/dlq/${unfixable}/retry`);
    expect(failed.statusCode).toBe(200);
    expect(json(failed)).toMatchObject({ resolved: 0, retrying: 1 });
    const [stillThere] = json<DlqEntry[]>(await get(`/dlq?status=retrying&topic=${leads}`));
    expect(stillThere).toMatchObject({ id: unfixable, attempts: 1, last_error: expect.stringMatching(/tenant/) });

    expect((await post('/dlq/999999/retry')).statusCode).toBe(404);
  });

  it('POST /dlq/:id/retry answered 202 is at once a replay of ours: its status URL answers, not 404', async () => {
    const { rows } = await env.h.pool.query<{ id: string }>(
      `INSERT INTO event_dlq (topic, tenant_id, payload, error, reason)
       VALUES ($1, 'dlq-202', '{"tenant_id":"dlq-202","name":"later"}', 'simulated', 'db_error') RETURNING id`,
      [leads],
    );
    // No wait for the result: the answer is a 202 before the workflow's first activity has written its audit row.
    const app = await buildTestApp(env.h, { ...env.h.config, api: { ...env.h.config.api, replayWaitMs: 0 } });
    try {
      const res = await post(`/dlq/${rows[0].id}/retry`, undefined, {}, app);
      expect(res.statusCode).toBe(202);
      const status = await get(json(res).status_url as string, app);
      expect(status.statusCode).toBe(200);
      expect(json(status)).toMatchObject({ workflow_id: json(res).workflow_id });
    } finally {
      await app.close();
    }
  });
});
