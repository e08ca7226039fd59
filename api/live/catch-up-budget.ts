/**
 * How many journal rows all of a process's catch-ups together may send per second (STREAM_CATCHUP_ROWS_PER_SECOND).
 * The dedicated pool keeps catch-up reads off ingest's connections, but encoding them is CPU on the event loop ingest
 * shares in `npm start`: 100 clients reading from `Last-Event-ID: 0` as fast as they can left ingest a third of its
 * rate (bench `api-pool`). A token bucket, refilled continuously, at most one second's worth banked; clients wait in
 * arrival order, so a hundred of them share the budget instead of the fastest taking it all.
 */
export interface CatchUpBudget {
  /** Waits until `rows` may be sent (at once when the budget is off); gives up, resolving, once `isClosed()`. */
  take(rows: number, isClosed: () => boolean): Promise<void>;
}

export interface BudgetClock {
  now(): number;
  sleep(ms: number): Promise<void>;
}

const realClock: BudgetClock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/** Longest single wait, so that a closed client's turn passes promptly to the next. */
const MAX_SLEEP_MS = 250;

export function createCatchUpBudget(rowsPerSecond: number, clock: BudgetClock = realClock): CatchUpBudget {
  if (rowsPerSecond <= 0) return { take: async () => undefined };
  let tokens = rowsPerSecond;
  let at = clock.now();
  let queue: Promise<void> = Promise.resolve();
  const refill = () => {
    const now = clock.now();
    tokens = Math.min(rowsPerSecond, tokens + ((now - at) * rowsPerSecond) / 1000);
    at = now;
  };
  const wait = async (rows: number, isClosed: () => boolean) => {
    // A page larger than a second's budget is let through once the bucket is full, then owed (tokens go negative).
    const needed = Math.min(rows, rowsPerSecond);
    for (refill(); tokens < needed && !isClosed(); refill()) {
      await clock.sleep(Math.min(MAX_SLEEP_MS, Math.ceil(((needed - tokens) * 1000) / rowsPerSecond)));
    }
    if (!isClosed()) tokens -= rows;
  };
  return {
    take(rows, isClosed) {
      const turn = queue.then(() => wait(rows, isClosed));
      queue = turn.catch(() => undefined);
      return turn;
    },
  };
}
