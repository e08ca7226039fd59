import { loadLineageKey } from '../../journal/lineage';
import type { Queryable } from '../../repository/queryable';

// A process starting while Postgres is down or starting up waits for the key instead of exiting (an outage pauses);
// anything else fails at once.

function database(failures: unknown[]): Queryable & { calls: number } {
  const db = {
    calls: 0,
    async query() {
      db.calls += 1;
      const failure = failures.shift();
      if (failure) throw failure;
      return { rows: [{ secret: Buffer.from('the-key') }] };
    },
  };
  return db as unknown as Queryable & { calls: number };
}

it('waits while Postgres refuses connections or is starting up, then returns the key', async () => {
  const db = database([
    Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
    Object.assign(new Error('the database system is starting up'), { code: '57P03' }),
  ]);
  await expect(loadLineageKey(db, undefined, 10_000)).resolves.toEqual(Buffer.from('the-key'));
  expect(db.calls).toBe(3);
});

it('gives up after the wait, and fails at once on an error that is not an outage', async () => {
  const down = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  const db = database(Array.from({ length: 100 }, () => down));
  await expect(loadLineageKey(db, undefined, 600)).rejects.toThrow(/ECONNREFUSED/);
  expect(db.calls).toBeGreaterThan(1);
  const missing = database([Object.assign(new Error('relation "service_keys" does not exist'), { code: '42P01' })]);
  await expect(loadLineageKey(missing, undefined, 10_000)).rejects.toThrow(/service_keys/);
  expect(missing.calls).toBe(1);
});

it('uses LINEAGE_KEY when configured, without asking Postgres', async () => {
  const db = database([]);
  await expect(loadLineageKey(db, 'a-configured-key-of-32-characters!!')).resolves.toEqual(
    Buffer.from('a-configured-key-of-32-characters!!'),
  );
  expect(db.calls).toBe(0);
});

it('stops waiting at the next retry once its signal is aborted', async () => {
  const down = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  const db = database(Array.from({ length: 100 }, () => down));
  const stop = new AbortController();
  const waiting = loadLineageKey(db, undefined, 120_000, stop.signal);
  await new Promise((r) => setTimeout(r, 300)); // the first retry has begun
  stop.abort();
  const started = Date.now();
  await expect(waiting).rejects.toThrow(/ECONNREFUSED/);
  // The retry it was sleeping through (at most 500 ms here), not the 120 s wait.
  expect(Date.now() - started).toBeLessThan(5_000);
});
