import { checkAccounting, consumerRestarts, counterTotals, type IngestProcess, type Violation } from './check';
import type { Services } from './instance';

/**
 * Scrapes the ingest process's /metrics periodically and when asked (just before a planned kill, and at the end),
 * keeping each process's last scrape: its counters die with it. Every scrape is also checked on its own
 * (consumed = journaled + dead_lettered + redelivered per partition, invariant 3).
 */
export class IngestScraper {
  readonly last = new Map<number, { at: number; text: string; scrapes: number }>();
  /** Per-scrape accounting violations, the first per process and partition. */
  readonly violations: Violation[] = [];
  scrapes = 0;
  failures = 0;
  private readonly reported = new Set<string>();
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly url: string,
    private readonly services: Services,
  ) {}

  /** Scrapes the running ingest process; a scrape that a restart overtook is dropped. */
  async scrape(): Promise<boolean> {
    const pid = this.services.pidOf('ingest');
    if (pid === undefined) return false;
    const at = Date.now();
    let text: string;
    try {
      const res = await fetch(this.url, { signal: AbortSignal.timeout(3000) });
      text = await res.text();
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
    } catch {
      this.failures++;
      return false;
    }
    if (this.services.pidOf('ingest') !== pid || counterTotals(text) === undefined) return false;
    this.scrapes++;
    this.last.set(pid, { at, text, scrapes: (this.last.get(pid)?.scrapes ?? 0) + 1 });
    for (const v of checkAccounting(text).violations) {
      const key = `${pid} ${v.detail.split(':')[0]}`;
      if (this.reported.has(key)) continue;
      this.reported.add(key);
      this.violations.push({
        rule: 'accounting',
        detail: `ingest pid ${pid} at ${new Date(at).toISOString()}: ${v.detail}`,
      });
    }
    return true;
  }

  start(everyMs: number): void {
    const tick = () => {
      this.timer = setTimeout(() => void this.scrape().finally(tick), everyMs);
      this.timer.unref();
    };
    tick();
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  /** Every ingest process the soak ran, with its last scrape's totals. */
  processes(): IngestProcess[] {
    return this.services.lives
      .filter((l) => l.service === 'ingest')
      .map((l) => {
        const s = this.last.get(l.pid);
        return {
          pid: l.pid,
          startedAt: l.startedAt,
          endedAt: l.endedAt,
          end: l.end,
          scrapes: s?.scrapes ?? 0,
          lastScrapeAt: s?.at,
          totals: s ? counterTotals(s.text) : undefined,
          consumerRestarts: s ? consumerRestarts(s.text) : undefined,
        };
      });
  }
}
