import { awaitBarrierHolders, holdBarrier } from '../../shared/barrier';
import { createPool, type Pool } from '../../shared/db';
import { createLogger } from '../../shared/logger';
import { createTestDatabase } from '../support/database';
import { baseConfig } from '../support/env';
import { freezableProxy, type FreezableProxy } from '../support/freezable-proxy';
import { connectTableLock, untilWaitingOn } from '../support/table-lock';

/**
 * Found by the barrier soak in CI (barrier-holders-soak, stop 25: "1 still held" for a minute of retries): a holder's
 * INSERT was sent, its connection was then reset (a restart as the client sees it), and the row committed anyway.
 *
 * Invariant: a holder whose work never ran leaves no row that a waiter (an erasure) waits a lease for.
 *
 * The holder took the insert's failure for "Postgres refused it, no row" whenever the error had a `code`: a Node
 * socket error has one too (ECONNRESET), though Postgres never answered. Here the INSERT waits on a lock on
 * barrier_holders (so it is on the server, unanswered), the connection is reset through a proxy, and the lock goes:
 * the backend, which has not read its socket since, commits the row. Before: that row stayed unexpired for the whole
 * lease, and the waiter gave up naming it.
 */
jest.setTimeout(60_000);

let db: Awaited<ReturnType<typeof createTestDatabase>>;
let direct: Pool;
let proxied: Pool;
let proxy: FreezableProxy;

beforeAll(async () => {
  db = await createTestDatabase(baseConfig().databaseUrl, 'barrier_insert_reset');
  direct = createPool(db.databaseUrl, 2, createLogger('silent'));
  const url = new URL(db.databaseUrl);
  proxy = await freezableProxy(url.hostname, Number(url.port));
  url.port = String(proxy.port);
  proxied = createPool(url.toString(), 4, createLogger('silent'));
  // Every row ever inserted, so the test can tell the reset insert did commit (the holder deletes it soon after).
  await direct.query(`
    CREATE TABLE inserted_holders (id uuid);
    CREATE FUNCTION note_holder() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN INSERT INTO inserted_holders VALUES (NEW.id); RETURN NEW; END $$;
    CREATE TRIGGER note_holder AFTER INSERT ON barrier_holders FOR EACH ROW EXECUTE FUNCTION note_holder();`);
});
afterAll(async () => {
  await proxied?.end().catch(() => undefined);
  await proxy?.close();
  await direct?.end();
  await db?.drop();
});

it('a holder whose connection is reset while its INSERT waits leaves no row once that INSERT commits', async () => {
  const name = 'insert-reset';
  const lock = await connectTableLock(db.databaseUrl, 'barrier_holders');
  await lock.take();
  let ran = false;
  const outcome = holdBarrier(proxied, name, async () => {
    ran = true;
  }).then(
    () => 'held',
    (err: Error & { code?: string }) => `rejected (${err.code ?? 'no code'})`,
  );
  await untilWaitingOn(direct, 'barrier_holders', 1);
  proxy.cut(100);
  const told = await outcome;
  await lock.release(); // the waiting INSERT commits now
  await lock.end();
  const verdict = await awaitBarrierHolders(direct, name, { timeoutMs: 8000 }).then(
    () => 'returned',
    (err: Error) => `rejected: ${err.message}`,
  );
  expect({ ran, told, verdict }).toEqual({ ran: false, told: 'rejected (ECONNRESET)', verdict: 'returned' });
  // Not vacuous: the reset insert did commit its row (deleted afterwards by the holder's id).
  const { rows } = await direct.query<{ n: number }>('SELECT count(*)::int AS n FROM inserted_holders');
  expect(rows[0].n).toBe(1);
});
