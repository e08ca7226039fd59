import { writeSegment, type ArchiveRow, type ArchiveStore } from '../../archive';
import { subjectHash, type ErasureTarget } from '../../lifecycle/erasure-target';
import { storeErasureSubject } from '../../repository/erasure';
import { insertDlqEntries } from '../../repository/event-dlq';
import { insertJournalEntries, type NewJournalEntry } from '../../repository/event-journal';
import type { Queryable } from '../../repository/queryable';
import { ensureServiceKey } from '../../repository/service-keys';
import { advisoryKey } from '../../shared/db';
import { plainRow, storeContents } from './archive';
import { dlqEntry } from './dlq';
import { uniqueSuffix } from './env';

const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');

function journalEntry(topic: string, payload: Record<string, unknown>, over: Partial<NewJournalEntry> = {}) {
  return {
    tenantId: String(payload.tenant_id ?? 'acme'),
    topic,
    payloadJson: JSON.stringify(payload),
    partition: 0,
    offset: String(Math.floor(Math.random() * 1e12)),
    key: null,
    keyBytes: null,
    headersJson: '[]',
    timestamp: null,
    contentHash: null,
    replayCount: 0,
    replaySource: null,
    ...over,
  } satisfies NewJournalEntry;
}

/** What seedSubject wrote: the ids that must go and the ones that must stay. */
export interface SubjectSeed {
  value: string;
  erasedJournalIds: number[];
  keptJournalIds: number[];
  erasedDlqIds: number[];
  keptDlqIds: number[];
  /** The archived segment, its erased and kept row ids. */
  segment: string;
  erasedArchiveIds: number[];
  keptArchiveIds: number[];
}

/**
 * Writes a data subject's email into every place the service keeps a record, beside rows that must survive: journal
 * rows (the field, a nested copy, the key, a header), dead letters (a parsed payload, raw text that is not JSON,
 * bytes that are not UTF-8 with the value inside, a JSON.parse error quoting it), and an archived segment.
 */
export async function seedSubject(db: Queryable, archive: ArchiveStore, topic: string): Promise<SubjectSeed> {
  const value = `erase-me-${uniqueSuffix()}@example.com`;
  const journal = await insertJournalEntries(db, [
    journalEntry(topic, { tenant_id: 'acme', email: value, name: 'Ann' }),
    journalEntry(
      topic,
      { tenant_id: 'acme', email: 'other@example.com' },
      { key: value, keyBytes: Buffer.from(value) },
    ),
    journalEntry(topic, { tenant_id: 'globex', contact: { emails: ['x@example.com', value] } }),
    journalEntry(
      topic,
      { tenant_id: 'globex', email: 'keep@example.com' },
      {
        headersJson: JSON.stringify([
          ['x-contact', b64(value)],
          ['x-trace', b64('t-1')],
        ]),
      },
    ),
    journalEntry(topic, { tenant_id: 'acme', email: 'keep@example.com', note: 'kept' }),
    journalEntry(topic, { tenant_id: 'acme', email: value.replace('@', '+2@') }),
  ]);
  const ids = journal.map((r) => Number(r.id));
  const raw = `{"email": "${value}", "name": broken`;
  const dlq = await insertDlqEntries(db, [
    dlqEntry(topic, {
      payloadJson: JSON.stringify({ email: value }),
      rawBytes: Buffer.from(JSON.stringify({ email: value })),
      reason: 'missing_tenant',
      error: 'Event has no tenant',
    }),
    dlqEntry(topic, {
      rawValue: raw,
      rawBytes: Buffer.from(raw),
      error: `Unexpected token 'b', "${raw.slice(0, 40)}"... is not valid JSON`,
    }),
    dlqEntry(topic, {
      rawBytes: Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(`email=${value}`)]),
      rawValue:
        'base64:' + Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(`email=${value}`)]).toString('base64'),
      reason: 'invalid_utf8',
    }),
    dlqEntry(topic, { rawValue: 'garbage kept', rawBytes: Buffer.from('garbage kept') }),
    dlqEntry(topic, {
      tenantId: 'acme',
      payloadJson: JSON.stringify({ tenant_id: 'acme', email: 'keep@example.com' }),
      rawBytes: Buffer.from('{}'),
      reason: 'db_error',
      error: 'simulated refusal',
    }),
  ]);
  const dlqIds = dlq.map((r) => Number(r.id));

  const base = 900_000_000 + Math.floor(Math.random() * 1_000_000);
  const rows: ArchiveRow[] = [
    plainRow(base + 1, JSON.stringify({ email: value, tenant_id: 'acme' })),
    plainRow(base + 2, JSON.stringify({ email: 'keep@example.com', tenant_id: 'acme' })),
    plainRow(base + 3, JSON.stringify({ email: 'keep2@example.com' }), {
      kafka_key: value,
      kafka_key_bytes: b64(value),
    }),
    plainRow(base + 4, JSON.stringify({ email: 'keep3@example.com' }), {
      kafka_headers: JSON.stringify([['x-contact', b64(value)]]),
    }),
    plainRow(base + 5, JSON.stringify({ list: [1, value] })),
    plainRow(base + 6, JSON.stringify({ email: value.replace('@', '+2@') })),
  ];
  const segment = `seg_erasure_${uniqueSuffix()}`;
  await writeSegment(archive, { segment, table: 'event_journal', rows, expectedRows: rows.length });
  // Another segment without the subject: read, never rewritten.
  await writeSegment(archive, {
    segment: `${segment}_clean`,
    table: 'event_journal',
    rows: [plainRow(base + 10, '{"email": "keep@example.com"}')],
  });
  return {
    value,
    erasedJournalIds: ids.slice(0, 4),
    keptJournalIds: ids.slice(4),
    erasedDlqIds: dlqIds.slice(0, 3),
    keptDlqIds: dlqIds.slice(3),
    segment,
    erasedArchiveIds: [base + 1, base + 3, base + 4, base + 5],
    keptArchiveIds: [base + 2, base + 6, base + 10],
  };
}

/**
 * Every place in Postgres (every column of every row of every table of the schema, bytea as hex and as escaped
 * text) and in the archive (every object, decompressed) that holds the value, as UTF-8, base64 or hex. A grep.
 */
export async function findValue(db: Queryable, archive: ArchiveStore, value: string): Promise<string[]> {
  const forms = [value, b64(value), Buffer.from(value).toString('hex')];
  const found: string[] = [];
  const { rows: tables } = await db.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition`,
  );
  for (const { name } of tables) {
    const { rows: byteColumns } = await db.query<{ column_name: string }>(
      `SELECT column_name FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = $1 AND data_type = 'bytea'`,
      [name],
    );
    const texts = [`t::text`, ...byteColumns.map((c) => `encode(t.${c.column_name}, 'escape')`)];
    const { rows } = await db.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${name} t
        WHERE ${texts.map((text) => `strpos(${text}, $1) > 0 OR strpos(${text}, $2) > 0 OR strpos(${text}, $3) > 0`).join(' OR ')}`,
      forms,
    );
    if (rows[0].n > 0) found.push(`postgres ${name}: ${rows[0].n} rows`);
  }
  for (const [key, text] of await storeContents(archive)) {
    if (forms.some((form) => text.includes(form))) found.push(`archive ${key}`);
  }
  return found;
}

/** The hash an erasure subject (email `value`) is stored under, with the database's erasure key. */
export async function emailSubjectHash(db: Queryable, value: string): Promise<string> {
  return subjectHash(await ensureServiceKey(db, 'erasure'), emailSubject(value));
}

/** Stores the subject (email `value`) for an erasure, as POST /erasure does: its hash, what erasureWorkflow takes. */
export async function storeEmailSubject(db: Queryable, value: string): Promise<string> {
  const hash = await emailSubjectHash(db, value);
  await storeErasureSubject(db, hash, emailSubject(value));
  return hash;
}

const emailSubject = (value: string): ErasureTarget => ({ kind: 'subject', field: 'email', value });

/** Whether erasure_subjects still holds a subject (its plaintext value) under `hash`. */
export async function subjectStored(db: Queryable, hash: string): Promise<boolean> {
  const { rows } = await db.query('SELECT 1 FROM erasure_subjects WHERE subject_hash = $1', [hash]);
  return rows.length > 0;
}

/** The backends holding the erasure archive pass's session lock (advisory, 'erasure-archive-pass') now: one or none. */
export async function archivePassLockHolders(db: Queryable): Promise<number[]> {
  const key = advisoryKey('erasure-archive-pass');
  const classid = Number((BigInt.asUintN(64, key) >> 32n) & 0xffffffffn);
  const objid = Number(BigInt.asUintN(64, key) & 0xffffffffn);
  const { rows } = await db.query<{ pid: number }>(
    `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid = $1 AND objid = $2`,
    [classid, objid],
  );
  return rows.map((r) => r.pid);
}

/** What a client of POST /erasure saw: the status (or that it gave up waiting) and the body's ids. */
export interface ErasureAnswer {
  status: number | string;
  body: { erasure_id?: string; workflow_id?: string };
}

/**
 * POST /erasure, a real run (dry_run false), of the email `value` on the API at `url`, with an Idempotency-Key when
 * given; the client gives up after `waitMs`, and its status then says so.
 */
export function postErasure(url: string, value: string, waitMs: number, key?: string): Promise<ErasureAnswer> {
  return fetch(`${url}/erasure`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-requested-by': 'erasure-test',
      ...(key ? { 'idempotency-key': key } : {}),
    },
    body: JSON.stringify({ subject: { field: 'email', value }, dry_run: false }),
    signal: AbortSignal.timeout(waitMs),
  }).then(
    async (r) => ({ status: r.status, body: (await r.json()) as ErasureAnswer['body'] }),
    (err: Error) => ({ status: `no answer within ${waitMs} ms (${err.name})`, body: {} }),
  );
}
