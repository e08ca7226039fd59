import { Context } from '@temporalio/activity';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Activities } from '../../activities';
import { classified } from '../../journal/error-class';
import { parseRecord } from '../../journal/record';
import { changeDlqStatus, insertDlqEntries } from '../../repository/event-dlq';
import type { DlqRepairInput, DlqRepairResult } from '../../workflows/definitions';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { runWithActivities, testServerPath } from '../support/temporal';

// Issue 13, point 2: a repair applied by dlqRepairWorkflow with the real activities on the time-skipping server.

let env: TestWorkflowEnvironment;
let h: SinkHarness;
const taskQueue = 'dlq-repair-test';

beforeAll(async () => {
  env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: testServerPath() } },
  });
  h = await createSinkHarness('dlqrepair');
});
afterAll(async () => {
  await h?.close();
  await env?.teardown();
});

/** Runs the repair on a worker whose activities are the real ones, some optionally wrapped (to inject failures). */
function repair(workflowId: string, input: DlqRepairInput, wrap: (real: Activities) => Partial<Activities>) {
  return runWithActivities<DlqRepairResult>(
    env,
    h,
    { taskQueue, workflow: 'dlqRepairWorkflow', workflowId, input },
    wrap,
  );
}

/** A dead letter as ingest writes it: the record as consumed went through the parser and was rejected. */
async function deadLetter(offset: number, value: string): Promise<number> {
  const parsed = parseRecord(
    {
      topic: h.topics.leads,
      partition: 1,
      offset: String(offset),
      key: Buffer.from([0x00, 0xfe, offset]),
      value: Buffer.from(value),
      headers: { 'x-trace': Buffer.from(`trace-${offset}`) },
      timestamp: String(Date.UTC(2026, 0, 3)),
    },
    { maxBytes: 1024 * 1024, lineageKey: h.lineageKey },
  );
  if (parsed.ok) throw new Error('test record was accepted');
  const [row] = await insertDlqEntries(h.pool, [classified(parsed.dlq)]);
  return row.id;
}

it('journals each fixed entry once with lineage, although the page is retried after it committed', async () => {
  const fixable = await deadLetter(10, '{"lead_id":7,"name":"no tenant"}');
  const rounded = await deadLetter(11, '{"lead_id":8,"amount":123456789012345678901234567890}');
  const other = await deadLetter(12, '{"lead_id":9}');
  const before = (await h.pool.query('SELECT * FROM event_dlq WHERE id = $1', [fixable])).rows[0];

  // The first call of each page does its work, commits, and then fails as a crashed worker would: Temporal retries it.
  const attempts: number[] = [];
  const result = await repair(
    'dlq-repair-injected',
    {
      selection: { ids: [fixable, rounded] },
      edit: { patch: [{ op: 'add', path: '/tenant_id', value: 'acme' }] },
      requestedBy: 'test-operator',
      reason: 'producer forgot the tenant',
      pageSize: 1,
    },
    (real) => ({
      repairDlqPage: async (input) => {
        const { attempt } = Context.current().info;
        attempts.push(attempt);
        const page = await real.repairDlqPage(input);
        if (attempt === 1) throw new Error('worker lost after the page committed (simulated)');
        return page;
      },
    }),
  );

  expect(result).toEqual({
    status: 'completed',
    repair_id: 'dlq-repair-injected',
    workflow_id: 'dlq-repair-injected',
    journaled: 1,
    invalid: 1,
    skipped: 0,
  });
  // Three pages (two entries, then an empty one), each run twice.
  expect(attempts).toEqual([1, 2, 1, 2, 1, 2]);

  const { rows: journaled } = await h.pool.query(
    "SELECT * FROM event_journal WHERE payload->>'_repaired_from_dlq_id' = $1",
    [String(fixable)],
  );
  expect(journaled).toHaveLength(1);
  expect(journaled[0]).toMatchObject({
    tenant_id: 'acme',
    topic: h.topics.leads,
    kafka_partition: 1,
    kafka_offset: 10,
    replay_count: 0,
    payload: {
      lead_id: 7,
      name: 'no tenant',
      tenant_id: 'acme',
      _repaired_from_dlq_id: fixable,
      _repair_id: 'dlq-repair-injected',
    },
    kafka_key_bytes: Buffer.from([0x00, 0xfe, 10]),
    kafka_timestamp: new Date(Date.UTC(2026, 0, 3)),
  });
  // The record is the one consumed: the dead letter's hash, so that a redelivery of it is recognised.
  expect(journaled[0].content_hash).toEqual(before.content_hash);
  expect(journaled[0].kafka_headers).toEqual(before.kafka_headers);

  const dlq = async (id: number) => (await h.pool.query('SELECT * FROM event_dlq WHERE id = $1', [id])).rows[0];
  const fixed = await dlq(fixable);
  expect(fixed).toMatchObject({ status: 'resolved', resolved_event_id: journaled[0].id, attempts: 1 });
  // The dead letter keeps the bytes it was consumed with.
  expect(fixed.raw_bytes).toEqual(Buffer.from('{"lead_id":7,"name":"no tenant"}'));
  expect(fixed.payload).toEqual(before.payload);

  // A patch would round the 30-digit number: reported, and the entry left exactly as it was.
  const untouched = await dlq(rounded);
  expect(untouched).toMatchObject({ status: 'pending', attempts: 0, last_error: null, resolved_event_id: null });
  expect(await dlq(other)).toMatchObject({ status: 'pending' });

  const { rows: audit } = await h.pool.query(
    'SELECT dlq_id, outcome, journal_id, error FROM dlq_repair_entries WHERE repair_id = $1 ORDER BY dlq_id',
    ['dlq-repair-injected'],
  );
  expect(audit).toEqual([
    { dlq_id: fixable, outcome: 'journaled', journal_id: journaled[0].id, error: null },
    { dlq_id: rounded, outcome: 'invalid', journal_id: null, error: expect.stringMatching(/would round them/) },
  ]);
  const { rows: repairs } = await h.pool.query('SELECT * FROM dlq_repairs WHERE id = $1', ['dlq-repair-injected']);
  expect(repairs[0]).toMatchObject({
    requested_by: 'test-operator',
    status: 'completed',
    reason: 'producer forgot the tenant',
    edit: { patch: [{ op: 'add', path: '/tenant_id', value: 'acme' }] },
    selection: { ids: [fixable, rounded] },
  });
  expect(repairs[0].finished_at).toBeInstanceOf(Date);
});

it('a second repair of a resolved entry skips it; a selection by filter repairs within its tenant only', async () => {
  const mine = await deadLetter(20, '{"lead_id":20,"tenantId":"   "}');
  const result = await repair(
    'dlq-repair-scoped',
    {
      selection: { topic: h.topics.leads, status: 'pending' },
      edit: { patch: [{ op: 'replace', path: '/tenantId', value: 'globex' }] },
      tenantScope: 'acme',
      requestedBy: 'tenant-operator',
    },
    () => ({}),
  );
  // The pending entries: two without a /tenantId to replace (the patch fails on them), and this one, whose tenant
  // would be globex: refused for a token of acme. None is touched.
  expect(result).toMatchObject({ journaled: 0, invalid: 3, skipped: 0 });
  const { rows } = await h.pool.query('SELECT dlq_id, error FROM dlq_repair_entries WHERE repair_id = $1', [
    'dlq-repair-scoped',
  ]);
  expect(rows.find((r) => r.dlq_id === mine).error).toMatch(/tenant globex; this token may write tenant acme only/);

  const again = await repair(
    'dlq-repair-again',
    {
      selection: { ids: [mine] },
      edit: { patch: [{ op: 'replace', path: '/tenantId', value: 'acme' }] },
      tenantScope: 'acme',
      requestedBy: 'tenant-operator',
    },
    () => ({}),
  );
  expect(again).toMatchObject({ journaled: 1, invalid: 0, skipped: 0 });
  const third = await repair(
    'dlq-repair-third',
    { selection: { ids: [mine] }, edit: { value: { tenant_id: 'acme', lead_id: 21 } }, requestedBy: 'operator' },
    () => ({}),
  );
  expect(third).toMatchObject({ journaled: 0, invalid: 0, skipped: 1 });
  const { rows: copies } = await h.pool.query(
    "SELECT count(*)::int AS n FROM event_journal WHERE payload->>'_repaired_from_dlq_id' = $1",
    [String(mine)],
  );
  expect(copies[0].n).toBe(1);
});

it('a repair by error class and day skips an entry an operator discarded, as a retry and bulk actions do', async () => {
  const discarded = await deadLetter(30, '{"lead_id":30,');
  const open = await deadLetter(31, '{"lead_id":31,');
  const moved = await changeDlqStatus(h.pool, {
    ids: [discarded],
    from: ['pending'],
    to: 'discarded',
    bulkId: 'dlq-bulk-test-discard',
    discardReason: 'test data',
    now: new Date(),
  });
  expect(moved).toBe(1);
  const { rows: days } = await h.pool.query(
    "SELECT to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day FROM event_dlq WHERE id = $1",
    [open],
  );
  const { day } = days[0];
  const result = await repair(
    'dlq-repair-by-class',
    {
      selection: { topic: h.topics.leads, errorClass: 'invalid_json', day },
      edit: { value: { tenant_id: 'acme', lead_id: 31 } },
      requestedBy: 'operator',
    },
    () => ({}),
  );
  expect(result).toMatchObject({ journaled: 1, invalid: 0, skipped: 1 });
  const { rows } = await h.pool.query(
    'SELECT dlq_id, outcome, error FROM dlq_repair_entries WHERE repair_id = $1 ORDER BY dlq_id',
    ['dlq-repair-by-class'],
  );
  expect(rows).toEqual([
    { dlq_id: discarded, outcome: 'skipped', error: 'Discarded by an operator: test data' },
    { dlq_id: open, outcome: 'journaled', error: null },
  ]);
  const { rows: statuses } = await h.pool.query('SELECT id, status FROM event_dlq WHERE id = ANY($1) ORDER BY id', [
    [discarded, open],
  ]);
  expect(statuses).toEqual([
    { id: discarded, status: 'discarded' },
    { id: open, status: 'resolved' },
  ]);
});
