/** Command-line options every benchmark receives. */
export interface BenchOptions {
  /** Event count where a benchmark takes one (ingest). */
  events?: number;
  /** Repeats per measurement, for median and spread. */
  repeat: number;
  /** The stack measured: the default one, or the cluster profile where a benchmark supports it (sharded-replay). */
  profile: 'default' | 'cluster';
}
