import { createArchiveStore } from '../../archive';
import { createApiEnv, type ApiEnv } from '../support/api';
import { seedJournal } from '../support/journal';
import { archiveWindow } from '../../bench/support/archive';

// POST /replay/range with dry_run over a window part archived, part in the journal: the API answers with counts
// that include the archived events (and says how many are archived, and where), from the real worker's activities.
let env: ApiEnv;
let leads: string;
let jobs: string;

beforeAll(async () => {
  env = await createApiEnv('api-cold-replay', { ingest: false });
  ({ leads, jobs } = env.h.topics);
  // 40 events in January 2025, archived and removed; 30 in March 2025 and 20 in the last hour stay in the journal.
  await seedJournal(env.h.pool, 40, {
    topics: [leads, jobs],
    tenants: ['acme', 'globex'],
    from: new Date('2025-01-05'),
  });
  await seedJournal(env.h.pool, 30, {
    topics: [leads, jobs],
    tenants: ['acme', 'globex'],
    from: new Date('2025-03-05'),
  });
  await seedJournal(env.h.pool, 20, { topics: [leads], tenants: ['acme'] });
  await archiveWindow(env.h.pool, createArchiveStore(env.h.config.archive), {
    segment: 'api-cold-2025-01',
    from: '2025-01-01T00:00:00Z',
    before: '2025-02-01T00:00:00Z',
  });
});
afterAll(() => env?.close());

const dryRun = (body: Record<string, unknown>) =>
  env.app.inject({
    method: 'POST',
    url: '/replay/range',
    headers: { 'x-requested-by': 'test' },
    payload: { dry_run: true, ...body },
  });

it('counts archived events with the journal ones, and apart, per topic and tenant', async () => {
  const res = await dryRun({ start: '2024-12-01T00:00:00Z', end: new Date(Date.now() + 60_000).toISOString() });
  expect(res.statusCode).toBe(200);
  // seedJournal takes topics and tenants in turn: 20 of each per 40, 15 per 30.
  expect(res.json()).toEqual({
    status: 'dry_run',
    workflow_id: expect.any(String),
    matched: 90,
    by_topic: { [leads]: 20 + 15 + 20, [jobs]: 20 + 15 },
    by_tenant: { acme: 20 + 15 + 20, globex: 20 + 15 },
    archived: 40,
    archived_segments: ['api-cold-2025-01'],
    // The sample is read from the journal only: its first ten matches, the March events (ids 41 to 50).
    sample: expect.any(Array),
  });
  expect(res.json().sample.map((row: { id: number }) => row.id)).toEqual([41, 42, 43, 44, 45, 46, 47, 48, 49, 50]);
});

it('filters archived events like journal ones, and a window outside the archive reads none of it', async () => {
  const tenant = await dryRun({ start: '2024-12-01T00:00:00Z', end: '2025-04-01T00:00:00Z', tenant_id: 'globex' });
  expect(tenant.json()).toMatchObject({ matched: 35, by_tenant: { globex: 35 }, archived: 20 });
  const topic = await dryRun({ start: '2025-01-01T00:00:00Z', end: '2025-01-05T00:00:30Z', topic: jobs });
  expect(topic.json()).toMatchObject({ matched: 15, by_topic: { [jobs]: 15 }, archived: 15 });
  const live = await dryRun({ start: '2025-03-01T00:00:00Z', end: '2025-04-01T00:00:00Z' });
  expect(live.json()).toMatchObject({ matched: 30, archived: 0, archived_segments: [] });
});

it('counts the archive when retention has emptied the journal (the pinned id comes from the archive too)', async () => {
  await archiveWindow(env.h.pool, createArchiveStore(env.h.config.archive), {
    segment: 'api-cold-rest',
    from: '2025-02-01T00:00:00Z',
    before: new Date(Date.now() + 60_000).toISOString(),
  });
  expect(await env.h.journalCount()).toBe(0);
  const res = await dryRun({ start: '2024-12-01T00:00:00Z', end: new Date(Date.now() + 60_000).toISOString() });
  expect(res.json()).toMatchObject({
    matched: 90,
    archived: 90,
    archived_segments: ['api-cold-2025-01', 'api-cold-rest'],
  });
});
