/** Command-line options every benchmark receives. */
export interface BenchOptions {
  /** Event count where a benchmark takes one (ingest). */
  events?: number;
  /** Repeats per measurement, for median and spread. */
  repeat: number;
}
