import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { QueryResult } from 'pg';
import { MockActivityEnvironment } from '@temporalio/testing';
import type { ActivityDeps } from '../../activities/deps';
import { createRangeActivities } from '../../activities/range';
import { createLocalStore } from '../../archive/local-store';
import { pinDlqBulk, pinDlqSelection } from '../../repository/event-dlq';
import { answeringPool } from '../support/answering-pool';

/**
 * attack62 (helper-104's review of a0a62b3, items A3 and A5: repository/event-dlq.ts pinDlqBulk / pinDlqSelection,
 * activities/range.ts countAll / countRangeEvents).
 *
 * Invariant (shared/db.ts withExclusiveLock: "Writers asking for the shared form queue behind this wait, so `waitMs`
 * is also how long they may be held up"; DLQ_PIN_WAIT_MS and JOURNAL_PIN_WAIT_MS: the longest ingest is held up by a
 * pin): a pin holds the exclusive form of an append lock only to read the newest id (an index-only max), so that a
 * writer queued behind it waits no longer than the pin's own wait; and a dry run, which acts on nothing, takes no pin.
 *
 * Attack: record every statement a pin sends, in order, on a fake pool (the count answers at once here; in Postgres
 * it is a scan of event_dlq under an operator's filter, bounded only by the 30 s statement timeout). Then run a range
 * dry run (countRangeEvents) over an empty archive and look for the exclusive lock among its statements.
 *
 * Observed (on a0a62b3): both DLQ pins ran their count (countDlqBulk's, countDlq's SELECT count(*) ... FROM event_dlq
 * d WHERE <filter>) between pg_advisory_xact_lock and COMMIT: every ingest batch that dead-letters a record queued
 * behind the whole count, holding the journal's shared lock and its partitions' locks meanwhile (so journal pins
 * behind it failed with 55P03, each stalling every append for 5 s). The range dry run took the journal's exclusive lock
 * (countAll -> pinJournal), holding ingest up for a count that sends nothing.
 *
 * Suspected cause: repository/event-dlq.ts pinned() ran the plan's whole count inside withExclusiveLock; activities/
 * range.ts countAll pinned for planRange and countRangeEvents alike.
 *
 * Fixed: the DLQ pins read max(id) of event_dlq under the lock, commit, and count outside it bounded by `d.id <= pin`
 * (every id at or below the pin is committed, so the count is the same as under the lock); a range dry run counts at
 * maxEventId, the range as it stands, like the DLQ's dry runs.
 */

const PIN = 42;

interface Sent {
  text: string;
  values: unknown[];
}

/** A pool recording what is sent, answering the newest-id reads with PIN and counts with a count of 3. */
function recordingPool(sent: Sent[]) {
  return answeringPool(10, (text, values) => {
    sent.push({ text: text.replace(/\s+/g, ' ').trim(), values });
    const answer = (row: Record<string, unknown>) => ({ rows: [row], rowCount: 1 }) as unknown as QueryResult;
    if (text.includes('pg_export_snapshot')) return answer({ id: 'snapshot-1' });
    if (text.includes('count(*)')) {
      return answer({ matched: 3, eligible: 3, max_id: PIN - 1, by_status: {} });
    }
    if (text.includes('max(id)')) return answer({ max: PIN });
    return undefined;
  });
}

/** The statements sent while the exclusive form of an advisory lock was held (from taking it to the COMMIT). */
function underExclusiveLock(sent: Sent[]): string[] {
  const held: string[] = [];
  let holding = false;
  for (const { text } of sent) {
    if (holding && (text === 'COMMIT' || text === 'ROLLBACK')) holding = false;
    if (holding) held.push(text);
    if (text.includes('pg_advisory_xact_lock(')) holding = true;
  }
  return held;
}

describe('attack62: a DLQ pin holds its lock only to read the newest id', () => {
  const pins = {
    bulk: (pool: ReturnType<typeof recordingPool>) => pinDlqBulk(pool, { topic: 't' }, ['pending']),
    selection: (pool: ReturnType<typeof recordingPool>) => pinDlqSelection(pool, { topic: 't' }),
  };
  it.each(Object.keys(pins) as Array<keyof typeof pins>)('%s: counts after the COMMIT, up to the pin', async (name) => {
    const sent: Sent[] = [];
    await pins[name](recordingPool(sent));
    expect(underExclusiveLock(sent)).toEqual(['SELECT max(id) AS max FROM event_dlq']);
    const count = sent.find((s) => s.text.includes('count(*)'));
    expect(count?.text).toMatch(/d\.id <= \$\d+/);
    expect(count?.values).toContain(PIN);
  });
});

describe('attack62: a range dry run takes no pin', () => {
  let dir: string;
  beforeAll(() => (dir = mkdtempSync(join(tmpdir(), 'attack62-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const run = async (activity: 'countRangeEvents' | 'planRange') => {
    const sent: Sent[] = [];
    const deps = { pool: recordingPool(sent), archive: createLocalStore(dir) } as unknown as ActivityDeps;
    const activities = createRangeActivities(deps);
    const selection = { start: '2026-01-01T00:00:00Z', end: '2026-01-02T00:00:00Z' };
    await new MockActivityEnvironment().run(activities[activity], selection);
    return sent;
  };

  it('countRangeEvents counts the range as it stands, at the newest id, without the lock', async () => {
    const sent = await run('countRangeEvents');
    expect(sent.filter((s) => s.text.includes('pg_advisory_xact_lock('))).toEqual([]);
    expect(sent.find((s) => s.text.includes('count(*)'))?.values).toContain(PIN);
  });

  it('planRange (the control) pins: the newest id is read under the lock', async () => {
    expect(underExclusiveLock(await run('planRange'))).toEqual(['SELECT max(id) AS max FROM event_journal']);
  });
});
