import { EventEmitter } from 'node:events';
import pg from 'pg';
import { eventsAfter, JOURNAL_CHANNEL, maxEventId } from '../../repository/event-journal';
import type { Pool } from '../../shared/db';
import type { Logger } from '../../shared/logger';

const PAGE = 500;

/**
 * Follows the journal for the live stream: one LISTEN connection per API process, woken by the ingest consumer's
 * notification at each commit, reading the new rows once and emitting them to every subscriber ('rows'). It works
 * across processes (ingest and API may run apart) and reconnects by itself when Postgres restarts.
 */
export class JournalFeed extends EventEmitter {
  lastId = 0;
  private started = false;
  private client: pg.Client | undefined;
  private reading: Promise<void> | undefined;
  private again = false;
  private closed = false;

  constructor(
    private readonly databaseUrl: string,
    private readonly pool: Pool,
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
      if (!this.started) this.lastId = await maxEventId(this.pool);
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
    this.reading = (async () => {
      do {
        this.again = false;
        for (;;) {
          const rows = await eventsAfter(this.pool, this.lastId, {}, PAGE);
          if (rows.length === 0) break;
          this.lastId = rows[rows.length - 1].id;
          this.emit('rows', rows);
          if (rows.length < PAGE) break;
        }
      } while (this.again && !this.closed);
    })()
      .catch((err: Error) => this.log.warn({ err: err.message }, 'live stream read failed; will retry on next commit'))
      .finally(() => (this.reading = undefined));
  }

  async close(): Promise<void> {
    this.closed = true;
    const client = this.client;
    this.client = undefined;
    client?.removeAllListeners();
    await client?.end().catch(() => undefined);
    await this.reading;
  }
}

