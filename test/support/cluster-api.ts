import { randomUUID } from 'node:crypto';

/** One request as the cluster's API processes answered it, after fail-over and waiting out rate limits. */
export interface ApiAnswer<T = Record<string, unknown>> {
  status: number;
  body: T;
  /** Which API process answered (its base URL). */
  via: string;
  /** Calls that found a process down (connection refused, reset, timed out) and went to the other one. */
  failovers: number;
}

/**
 * A client of the cluster's API processes as a load balancer would use them: each request goes to one process and,
 * when that one does not answer (restarting), to the next. Mutating calls carry an Idempotency-Key, so a request
 * repeated after a lost answer returns the same workflow instead of starting another; a 429 is waited out
 * (Retry-After) since all API processes share one replay budget. Everything is bounded by `deadlineMs`.
 */
export class ClusterApi {
  private next = 0;

  constructor(
    private readonly bases: string[],
    private readonly deadlineMs = 120_000,
  ) {}

  async call<T = Record<string, unknown>>(
    method: 'GET' | 'POST' | 'PATCH',
    path: string,
    body?: unknown,
  ): Promise<ApiAnswer<T>> {
    const key = randomUUID();
    const deadline = Date.now() + this.deadlineMs;
    let failovers = 0;
    let lastError = '';
    while (Date.now() < deadline) {
      const base = this.bases[this.next++ % this.bases.length];
      let res: Response;
      try {
        res = await fetch(`${base}${path}`, {
          method,
          headers: {
            'x-requested-by': 'cluster-faults',
            ...(method === 'POST' ? { 'idempotency-key': key } : {}),
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(30_000),
        });
      } catch (err) {
        failovers++;
        lastError = `${base}: ${(err as Error).message}`;
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      // 503: nothing was done (a process refusing new requests as it closes, README "send it again"): the next
      // process gets it, with the same Idempotency-Key (the rolling restart's batch met api-1 100 ms into its stop).
      if (res.status === 503) {
        failovers++;
        lastError = `${base}: 503`;
        await res.body?.cancel();
        await new Promise((r) => setTimeout(r, 250));
        continue;
      }
      if (res.status === 429) {
        const wait = Math.min(Number(res.headers.get('retry-after') ?? '5'), 30);
        lastError = `${base}: 429`;
        await new Promise((r) => setTimeout(r, wait * 1000));
        continue;
      }
      return { status: res.status, body: (await res.json().catch(() => ({}))) as T, via: base, failovers };
    }
    throw new Error(`${method} ${path}: no API process answered within ${this.deadlineMs} ms (last: ${lastError})`);
  }
}
