import type { Producer } from 'kafkajs';
import type { ArchiveStore } from '../archive';
import type { Config } from '../shared/config';
import type { Pool } from '../shared/db';
import type { Logger } from '../shared/logger';
import type { Metrics } from '../shared/metrics';
import type { LineageKey } from '../journal/lineage';

/** What the worker injects into the activity factory (tests inject the same shape). */
export interface ActivityDeps {
  pool: Pool;
  producer: Producer;
  metrics: Metrics;
  log: Logger;
  config: Pick<Config, 'replay' | 'dlqRetry' | 'ingest' | 'kafka' | 'journal' | 'notifications'>;
  /** Signs the lineage of every replayed record (journal/lineage.ts). */
  lineageKey: LineageKey;
  /** The journal archive (created from config.archive): maintenance writes segments, erasure rewrites them. */
  archive: ArchiveStore;
}
