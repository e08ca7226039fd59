/** Value at quantile q (0..1) of the samples, nearest-rank. */
export function quantile(samples: number[], q: number): number {
  if (samples.length === 0) return NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank];
}

export const median = (samples: number[]) => quantile(samples, 0.5);

/** Median and spread of repeated measurements. */
export function summarize(samples: number[]) {
  return {
    median: round(median(samples)),
    min: round(Math.min(...samples)),
    max: round(Math.max(...samples)),
    samples: samples.map((s) => round(s)),
  };
}

export type Summary = ReturnType<typeof summarize>;

/** Latency percentiles of one run. */
export function percentiles(latenciesMs: number[]) {
  return {
    count: latenciesMs.length,
    p50: round(quantile(latenciesMs, 0.5)),
    p95: round(quantile(latenciesMs, 0.95)),
    p99: round(quantile(latenciesMs, 0.99)),
    max: round(latenciesMs.reduce((a, b) => Math.max(a, b), -Infinity)),
  };
}

export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export const ratio = (a: number, b: number) => round(a / b, 3);
