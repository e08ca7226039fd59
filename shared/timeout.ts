/** Rejected by withTimeout when the promise had not settled in time; the promise itself is left to run. */
export class TimeoutError extends Error {
  override readonly name = 'TimeoutError';
}

/** The promise's outcome, or a TimeoutError with `message` after `ms`, whichever comes first. */
export function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** 'done', the error the promise failed with, or 'timeout' after `ms` (the promise is then left to itself). */
export function settleWithin(promise: Promise<unknown>, ms: number): Promise<'done' | 'timeout' | Error> {
  return withTimeout(promise, ms, '').then(
    () => 'done' as const,
    (err: Error) => (err instanceof TimeoutError ? ('timeout' as const) : err),
  );
}

/**
 * The promise's value, or undefined when it has not settled within `ms` (never, when infinite) or once `signal`
 * aborts, whichever comes first (the promise is then left to itself).
 */
export async function within<T>(promise: Promise<T>, ms: number, signal?: AbortSignal): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  let onAbort = () => {};
  const ended = new Promise<undefined>((resolve) => {
    onAbort = () => resolve(undefined);
    if (Number.isFinite(ms)) timer = setTimeout(onAbort, ms);
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([promise, ended]);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * The promise's outcome, or the error `interrupted()` makes once `signal` aborts, whichever comes first (the promise
 * is then left to itself).
 */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal, interrupted: () => Error): Promise<T> {
  promise.catch(() => undefined); // left to itself once aborted: its failure is nobody's to handle then
  if (signal.aborted) return Promise.reject(interrupted());
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(interrupted());
    signal.addEventListener('abort', onAbort, { once: true });
  });
  return Promise.race([promise, aborted]).finally(() => signal.removeEventListener('abort', onAbort));
}

/**
 * A wait's share of a stop's budget (SHUTDOWN_TIMEOUT): `totalMs / divisor`, or all of it but `reserveMs` when that
 * is more, at most `capMs`; without a budget, `capMs`. The waits after it keep the rest.
 */
export function shareOf(totalMs: number | undefined, divisor: number, capMs: number, reserveMs = Infinity): number {
  if (totalMs === undefined) return capMs;
  return Math.min(capMs, Math.floor(Math.max(totalMs / divisor, totalMs - reserveMs)));
}

const eitherSignals = new WeakMap<AbortSignal, WeakMap<AbortSignal, AbortSignal>>();

/**
 * A signal that aborts when `a` or `b` does (with its reason), the same one for the same two: every AbortSignal.any
 * stays listed on its sources until they abort (Node 20), so one made per send of a long attempt grew two entries per
 * send (test/unit/attack49-signal-dependants-grow-per-send.test.ts).
 */
export function eitherSignal(a: AbortSignal, b: AbortSignal): AbortSignal {
  if (a === b) return a;
  let byB = eitherSignals.get(a);
  if (!byB) eitherSignals.set(a, (byB = new WeakMap()));
  let either = byB.get(b);
  if (!either) byB.set(b, (either = AbortSignal.any([a, b])));
  return either;
}

/**
 * A turn in a queue of waiters (`waiting`: each is called with what it is given, first in first out): resolves with
 * what it is given, or, once `signal` aborts before that, leaves the queue and rejects with the signal's reason.
 */
export function queueTurn<T>(waiting: ((given: T) => void)[], signal?: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (!signal) return void waiting.push(resolve);
    signal.throwIfAborted();
    const onAbort = () => {
      const i = waiting.indexOf(given);
      if (i >= 0) waiting.splice(i, 1);
      reject(signal.reason);
    };
    const given = (value: T) => {
      signal.removeEventListener('abort', onAbort);
      resolve(value);
    };
    waiting.push(given);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
