import type { Logger } from './logger';
import { settleWithin } from './timeout';

/**
 * The stop's clock. When a stop begins the runtime starts it (SHUTDOWN_TIMEOUT from the signal); from then on every
 * wait a stopper bounds (a client's close, a pool's end, a check in flight) is cut by stopWait so that it ends a
 * margin before the deadline. The waits of a stop run one after another, each with its own bound, and with several
 * dependencies frozen at once their bounds add up past a short SHUTDOWN_TIMEOUT; cut this way, the last of them
 * abandon what they wait for (the exit closes it) and the process still exits 0 within the timeout. A stopper with a
 * wait that has no bound still runs into the deadline, and the process exits 1 naming it.
 */
let deadline: { at: number; marginMs: number } | undefined;

/** How long before SHUTDOWN_TIMEOUT a stop's waits end: a twentieth of it, from 250 ms to 1 s. */
export function exitMarginMs(timeoutMs: number): number {
  return Math.min(1000, Math.max(250, Math.floor(timeoutMs / 20)));
}

/** Starts the stop's clock: `timeoutMs` from `signalAt`. */
export function startStopClock(signalAt: number, timeoutMs: number): void {
  deadline = { at: signalAt + timeoutMs, marginMs: exitMarginMs(timeoutMs) };
}

/** Forgets the stop's clock (tests). */
export function resetStopClock(): void {
  deadline = undefined;
}

/** `ms`, or less once a stop has begun: what is left of it before its deadline, less the margin (never below 0). */
export function stopWait(ms: number, now = Date.now()): number {
  if (!deadline) return ms;
  return Math.max(0, Math.min(ms, deadline.at - deadline.marginMs - now));
}

/**
 * Waits at most `ms` (cut by stopWait) for a client to close. One still closing then is abandoned and left for the
 * exit; the give-up is logged as `${what} did not ${verb} within … ms; abandoned it`. Never rejects; resolves whether
 * it closed.
 */
export async function closeWithin(
  closing: Promise<unknown>,
  ms: number,
  log: Pick<Logger, 'warn'> | undefined,
  what: string,
  { verb = 'close', fields = {} }: { verb?: string; fields?: Record<string, unknown> } = {},
): Promise<boolean> {
  const bound = stopWait(ms);
  const left = await settleWithin(closing, bound);
  if (left === 'done') return true;
  log?.warn(
    { ...fields, err: left === 'timeout' ? undefined : left.message, timeout_ms: bound },
    left === 'timeout'
      ? `${what} did not ${verb} within ${bound} ms; abandoned it`
      : `${what} failed to ${verb}; abandoned it`,
  );
  return false;
}
