import { EventEmitter } from 'node:events';
import pg from 'pg';
import {
  eventsAfter,
  eventsInRanges,
  JOURNAL_CHANNEL,
  maxEventId,
  type IdRange,
  type JournalRow,
} from '../../repository/event-journal';
import type { Logger } from '../../shared/logger';
import { stopWait } from '../../shared/stop-clock';
import { settleWithin } from '../../shared/timeout';

const PAGE = 500;
/** How long an id skipped over may still turn up (a transaction that took its ids earlier but committed later). */
const GAP_WAIT_MS = 60_000;
/** Gaps followed at most; the oldest are given up first. */
const MAX_GAPS = 1000;
/**
 * How long close() waits for its LISTEN client to end. Ending an idle client waits for the server to close the socket,
 * which a frozen server never does; the client is then left for the process's exit to close.
 */
const CLOSE_TIMEOUT_MS = 3000;

interface Gap extends IdRange {
  until: number;
}

/**
 * Follows the journal for the live stream: one connection per API process, LISTENing and reading on it, woken by the
 * ingest consumer's notification at each commit, reading the new rows once and emitting them to every subscriber
 * ('rows', with a flag for rows that turned up late, below ids already emitted). It works across processes (ingest
 * and API may run apart) and reconnects by itself when Postgres restarts.
 *
 * Ids are taken when a transaction starts writing but become visible when it commits, and batches commit
 * concurrently (several partitions at once, several ingest instances), so a row may appear below ids already read.
 * The feed therefore remembers the ids it has skipped over (gaps) for a while and looks there again on every wake;
 * gaps that stay empty (rolled back or conflicting inserts) are given up after GAP_WAIT_MS.
 */
export class JournalFeed extends EventEmitter {
  lastId = 0;
  private gaps: Gap[] = [];
  private started = false;
  private client: pg.Client | undefined;
  private reading: Promise<void> | undefined;
  private again = false;
  private closed = false;

  constructor(
    private readonly databaseUrl: string,
    private readonly log: Logger,
  ) {
    super();
    this.setMaxListeners(0);
  }

  /** Starts following from the journal's current end; keeps retrying in the background while Postgres is away. */
  async start(): Promise<void> {
    await this.listen();
  }

  private async listen(): Promise<void> {
    if (this.closed) return;
    const client = new pg.Client({ connectionString: this.databaseUrl, application_name: 'crm-events-sink-stream' });
    client.on('notification', () => this.wake());
    client.on('error', (err) => {
      this.log.warn({ err: err.message }, 'live stream lost its Postgres connection; reconnecting');
      this.reconnect(client);
    });
    client.on('end', () => this.reconnect(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${JOURNAL_CHANNEL}`);
      if (!this.started) this.lastId = await maxEventId(client);
      this.started = true;
      this.client = client;
      this.wake(); // catch up on anything committed while we were away
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'live stream cannot listen yet; retrying in 2 s');
      this.reconnect(client);
    }
  }

  private reconnect(client: pg.Client): void {
    if (this.closed || (this.client !== client && this.client !== undefined)) return;
    this.client = undefined;
    client.removeAllListeners();
    client.end().catch(() => undefined);
    setTimeout(() => void this.listen(), 2000).unref();
  }

  /** Reads everything after lastId, page by page; a notification during a read schedules one more read. */
  private wake(): void {
    if (this.reading) {
      this.again = true;
      return;
    }
    // Reads go over the LISTEN connection itself, never the API's pool: however busy the pool (catch-ups, exports
    // whose clients stopped reading), the feed keeps reading what ingest commits. Without it, listen() wakes again.
    const client = this.client;
    if (!client) return;
    this.reading = (async () => {
      do {
        this.again = false;
        for (;;) {
          const rows = await eventsAfter(client, this.lastId, {}, PAGE);
          if (rows.length === 0) break;
          this.noteGaps(rows);
          this.lastId = rows[rows.length - 1].id;
          this.emit('rows', rows, false);
          if (rows.length < PAGE) break;
        }
        await this.fillGaps(client);
      } while (this.again && !this.closed);
    })()
      .catch((err: Error) => this.log.warn({ err: err.message }, 'live stream read failed; will retry on next commit'))
      .finally(() => (this.reading = undefined));
  }

  /** Records the ids between lastId and each row that were not there (yet). */
  private noteGaps(rows: JournalRow[]): void {
    const until = Date.now() + GAP_WAIT_MS;
    let expected = this.lastId + 1;
    for (const { id } of rows) {
      if (id > expected) this.gaps.push({ from: expected, to: id - 1, until });
      expected = id + 1;
    }
    if (this.gaps.length > MAX_GAPS) this.gaps.splice(0, this.gaps.length - MAX_GAPS);
  }

  /** Emits rows that have appeared in known gaps since, and narrows or drops those gaps. */
  private async fillGaps(client: pg.Client): Promise<void> {
    const now = Date.now();
    this.gaps = this.gaps.filter((gap) => gap.until > now);
    if (this.gaps.length === 0) return;
    const late = await eventsInRanges(client, this.gaps);
    if (late.length === 0) return;
    const found = new Set(late.map((row) => row.id));
    this.gaps = this.gaps.flatMap((gap) => splitGap(gap, found));
    this.emit('rows', late, true);
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    this.client = undefined;
    client?.removeAllListeners();
    const ended = client?.end().catch(() => undefined);
    await settleWithin(Promise.all([ended, this.reading]), stopWait(CLOSE_TIMEOUT_MS));
  }
}

/** What is left of a gap once the ids in found have turned up. */
function splitGap(gap: Gap, found: Set<number>): Gap[] {
  const rest: Gap[] = [];
  let from = gap.from;
  for (let id = gap.from; id <= gap.to; id++) {
    if (!found.has(id)) continue;
    if (id > from) rest.push({ from, to: id - 1, until: gap.until });
    from = id + 1;
  }
  if (from <= gap.to) rest.push({ from, to: gap.to, until: gap.until });
  return rest;
}
