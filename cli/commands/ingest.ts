import { startIngest } from '../../ingest/consumer';
import type { Runtime } from '../runtime';

/** Starts the Kafka → journal consumer; returns its stopper (finishes and commits the batch in flight). */
export async function startIngestComponent(rt: Runtime) {
  const ingest = await startIngest({ ...rt, log: rt.log.child({ module: 'ingest' }) });
  return { ingest, stop: () => ingest.stop() };
}
