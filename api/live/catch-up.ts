import { eventsAfter, type JournalRow } from '../../repository/event-journal';
import type { Queryable } from '../../repository/queryable';
import { isOutage } from '../../shared/db';
import type { CatchUpBudget } from './catch-up-budget';
import type { StreamClient } from './stream-client';

const PAGE = 500;
/**
 * How long one page read keeps trying while the API's pool has no connection free (a checkout gives up after 5 s) or
 * Postgres does not answer. Many clients resuming at once queue for the few connections of that pool, on purpose:
 * they wait their turn rather than give up, and past this the client is told to reconnect.
 */
export const PAGE_WAIT_MS = 60_000;

export interface CatchUpResult {
  /** Journal events sent. */
  sent: number;
  /** True when more events were missed than maxBacklog allows: the client skips the rest and continues live. */
  truncated: boolean;
}

/**
 * Sends a resuming client what it missed, from the journal after its cursor, at most `maxBacklog` events. Pages are
 * no larger than the client's buffer, in rows and in bytes (`pageBytes` of payload text, at least one row), and the
 * next one is read only once the client has taken the last, so one slow client holds one page in memory and one pool
 * connection for one query at a time, never the whole journal. All catch-ups of the process share `budget`, so that
 * however many clients resume at once their reads and encoding stay within a rate (ingest shares the event loop); a
 * page is paid for in full before it is read, whatever it then holds.
 */
export async function catchUp(
  db: Queryable,
  client: StreamClient,
  opts: {
    maxBacklog: number;
    clientBuffer: number;
    pageBytes: number;
    isClosed: () => boolean;
    /**
     * The live feed's last read id. The catch-up reads no further: rows above it reach the client through the feed,
     * which alone knows the ids it skipped (a transaction that took its ids first and commits later) and sends them
     * when they turn up. Read past it, a row committing below what the client was sent would be lost.
     */
    horizon: () => number;
    /** Shared by every catch-up of the process: a page is sent when it fits (STREAM_CATCHUP_ROWS_PER_SECOND). */
    budget?: CatchUpBudget;
  },
): Promise<CatchUpResult> {
  const page = Math.min(PAGE, opts.clientBuffer);
  let sent = 0;
  while (!opts.isClosed()) {
    const left = opts.maxBacklog - sent;
    // One row past the cap tells whether anything was left out.
    const limit = Math.min(page, left + 1);
    // The budget is taken before the read: a client that hangs up while it waits costs no read and no encoding.
    await opts.budget?.take(Math.min(limit, left), opts.isClosed);
    if (opts.isClosed()) break;
    const rows = await readPage(db, client, limit, opts);
    if (rows.length > left) {
      client.offer(rows.slice(0, left));
      return { sent: sent + left, truncated: true };
    }
    client.offer(rows);
    sent += rows.length;
    if (rows.length === 0) break;
    await client.whenDrained();
  }
  return { sent, truncated: false };
}

/** One page after the client's cursor, tried again while the pool or Postgres is the problem (bounded, see above). */
async function readPage(
  db: Queryable,
  client: StreamClient,
  limit: number,
  opts: { pageBytes: number; isClosed: () => boolean; horizon: () => number },
): Promise<JournalRow[]> {
  const deadline = Date.now() + PAGE_WAIT_MS;
  for (let delay = 100; ; delay = Math.min(delay * 2, 2_000)) {
    try {
      return await eventsAfter(db, client.cursor, client.filter, limit, opts.pageBytes, opts.horizon());
    } catch (err) {
      if (!isOutage(err) || opts.isClosed() || Date.now() + delay > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}
