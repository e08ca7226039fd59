import { eventsAfter } from '../../repository/event-journal';
import type { Queryable } from '../../repository/queryable';
import type { StreamClient } from './stream-client';

const PAGE = 500;

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
 * connection for one query at a time, never the whole journal.
 */
export async function catchUp(
  db: Queryable,
  client: StreamClient,
  opts: { maxBacklog: number; clientBuffer: number; pageBytes: number; isClosed: () => boolean },
): Promise<CatchUpResult> {
  const page = Math.min(PAGE, opts.clientBuffer);
  let sent = 0;
  while (!opts.isClosed()) {
    const left = opts.maxBacklog - sent;
    // One row past the cap tells whether anything was left out.
    const limit = Math.min(page, left + 1);
    const rows = await eventsAfter(db, client.cursor, client.filter, limit, opts.pageBytes);
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
