import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { createActivities } from '../../activities';
import type { PlannedRange, RangeChunkResult, RangeSelection } from '../../activities/range';
import {
  copyJournalEntries,
  countRange,
  insertJournalEntries,
  JOURNAL_PIN_WAIT_MS,
  type NewJournalEntry,
} from '../../repository/event-journal';
import { createPool, type Pool, type PoolClient } from '../../shared/db';
import { ensureTopics } from '../../shared/kafka';
import { readTopic, seedJournal } from '../support/journal';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { advisoryLockWaits, untilAdvisoryLockWaits } from '../support/table-lock';
import { activityDeps } from '../support/temporal';

/**
 * attack54 (helper review of the range replay's pin: activities/range.ts planRange, repository/event-journal.ts
 * maxEventId / rangeWhere / copyJournalEntries).
 *
 * Invariant (docs/lifecycle.md "Range replay: what a replay takes"): a range replay republishes exactly the rows of
 * its window that are in the journal when it is pinned (ids up to its pin); a row committed later is either wholly
 * in the pinned range or wholly out of it, and the count planning reports is the count the replay sends.
 *
 * Attack: two ingest-like appends (the journal's own writers, each in an open transaction on a client of its own: a
 * through copyJournalEntries, ingest's fast path, b through insertJournalEntries, its fallback and appendOne's) take
 * ids a and b, rows of the window; committed rows are journaled before, between and after them. A range
 * replay is planned while both are open, and replayed page by page (pages of 10, as the workflow calls the activity).
 * Each holder commits as late as it can: b once the replay has sent its first page (its cursor still below b), a once
 * the cursor has passed a; or either as soon as the pin waits for it (without that the plan could never end).
 *
 * Observed: planning pinned at the newest committed id, above a and b, and counted 60 rows; the replay sent 61
 * (b, committed before the cursor reached it, but not a, committed after the cursor passed it); the pinned range
 * counted once both committed holds 62. What a replay takes of a row below its pin depends on when that row's
 * transaction commits relative to the cursor, and its reported total does not match what it sends.
 *
 * Suspected cause: event_journal ids come from a sequence when a transaction writes, and become visible when it
 * commits, in any order: max(id) at planning (activities/range.ts planRange, maxEventId) says nothing of ids below it
 * still uncommitted, while the keyset pages (`id > cursor AND id <= maxId`) see such a row only if it commits before
 * the cursor passes it.
 *
 * Fixed: every journal write takes the journal's append lock in its shared form in the statement that takes its ids
 * (repository/event-journal.ts), and the pin reads max(id) holding its exclusive form (pinJournal): every id at or
 * below the pin then belongs to a transaction that has ended. Here the pin waits for both holders, counts 62 and the
 * replay sends those 62.
 */
jest.setTimeout(120_000);

let h: SinkHarness;
let holders: Pool;
const TENANT = 'pin54';
const selection: RangeSelection = { start: '2000-01-01T00:00:00Z', end: '2100-01-01T00:00:00Z', tenantId: TENANT };
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

beforeAll(async () => {
  h = await createSinkHarness('attack54');
  holders = createPool(h.databaseUrl, 2, h.log);
});
afterAll(async () => {
  await holders?.end();
  await h?.close();
});

/** An append in an open transaction: one of the journal's own writers has taken the row's id; commit() ends it. */
interface OpenAppend {
  id: number;
  committed: boolean;
  commit(): Promise<void>;
}

async function openAppend(offset: number, write = copyJournalEntries): Promise<OpenAppend> {
  const client: PoolClient = await holders.connect();
  await client.query('BEGIN');
  const entry: NewJournalEntry = {
    tenantId: TENANT,
    topic: h.topics.leads,
    payloadJson: JSON.stringify({ late: offset, tenant_id: TENANT }),
    partition: 0,
    offset: String(offset),
    key: `late-${offset}`,
    keyBytes: Buffer.from(`late-${offset}`),
    headersJson: '[]',
    timestamp: null,
    contentHash: Buffer.alloc(32, offset),
    replayCount: 0,
    replaySource: null,
  };
  const [row] = await write(client, [entry]);
  const open: OpenAppend = {
    id: row.id,
    committed: false,
    async commit() {
      if (open.committed) return;
      open.committed = true;
      await client.query('COMMIT');
      client.release();
    },
  };
  return open;
}

it('a row whose id is below the pin but which commits after it is wholly in the replay or wholly out', async () => {
  const activities = createActivities(activityDeps(h));
  await seedJournal(h.pool, 20, { topics: [h.topics.leads], tenants: [TENANT] });
  const a = await openAppend(1);
  await seedJournal(h.pool, 20, { topics: [h.topics.leads], tenants: [TENANT] });
  const b = await openAppend(2, insertJournalEntries);
  await seedJournal(h.pool, 20, { topics: [h.topics.leads], tenants: [TENANT] });

  // Planning while both appends are open; they commit only if the pin waits for them.
  let plan: PlannedRange | undefined;
  let failed: unknown;
  const planning = new MockActivityEnvironment()
    .run(activities.planRange, selection)
    .then((p) => (plan = p as PlannedRange))
    .catch((err: unknown) => (failed = err));
  while (!plan && !failed) {
    if (await advisoryLockWaits(h.pool)) {
      await b.commit();
      await a.commit();
    }
    await sleep(20);
  }
  await planning;
  expect(failed).toBeUndefined();
  const filter = plan!.filter;
  expect(filter.maxId).toBeGreaterThan(b.id);

  // The replay, page by page as the workflow calls it; b commits after the first page, a once the cursor passed it.
  const targetTopic = `${h.topics.leads}.attack54`;
  await ensureTopics(h.kafka, [targetTopic], 3);
  const env = new MockActivityEnvironment({}, { logger: new DefaultLogger('ERROR') });
  let cursor = 0;
  let published = 0;
  for (let pages = 0; pages < 100; pages++) {
    const result = (await env.run(activities.replayRangePage, {
      filter,
      cursor,
      limit: 10,
      source: 'range',
      replayId: 'attack54',
      targetTopic,
    })) as RangeChunkResult;
    published += result.published;
    cursor = result.cursor;
    await b.commit();
    if (cursor > a.id) await a.commit();
    if (result.done) break;
  }
  await a.commit();

  // The pinned range as it stands once every append has ended, and what the replay sent of it.
  const pinned = (await countRange(h.pool, filter)).reduce((n, c) => n + c.events, 0);
  const { rows } = await h.pool.query<{ id: string }>(
    'SELECT id FROM event_journal WHERE tenant_id = $1 AND id <= $2 ORDER BY id',
    [TENANT, filter.maxId],
  );
  const sent = (await readTopic(h.kafka, targetTopic, published, 10_000))
    .map((m) => Number(m._replayed_from_event_id))
    .sort((x, y) => x - y);
  expect({ planned: plan!.total, published, pinned }).toEqual({ planned: 62, published: 62, pinned: 62 });
  expect(sent).toEqual(rows.map((r) => Number(r.id)));
  expect(sent).toEqual(expect.arrayContaining([a.id, b.id]));
});

it('a pin that waits past JOURNAL_PIN_WAIT_MS for an append fails (to be retried), and appends behind it go on', async () => {
  const activities = createActivities(activityDeps(h));
  const stuck = await openAppend(3);
  const started = Date.now();
  const planning = new MockActivityEnvironment({}, { logger: new DefaultLogger('ERROR') }).run(
    activities.planRange,
    selection,
  );
  expect(await untilAdvisoryLockWaits(h.pool)).toBe(true);
  // An append asking while the pin waits queues behind it, and goes on once the pin gives up.
  let queued = true;
  const behind = openAppend(4).finally(() => (queued = false));
  await sleep(500);
  expect(queued).toBe(true);
  const err = await planning.catch((e: unknown) => e);
  expect((err as { code?: string }).code).toBe('55P03');
  expect(Date.now() - started).toBeGreaterThanOrEqual(JOURNAL_PIN_WAIT_MS);
  const next = await behind;
  expect(next.id).toBeGreaterThan(stuck.id);
  await next.commit();
  await stuck.commit();
});
