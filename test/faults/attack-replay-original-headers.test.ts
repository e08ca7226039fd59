import { LINEAGE_HEADERS } from '../../journal/lineage';
import { createTimeSkippingWorld } from '../support/temporal';
import { eventually } from '../support/sink';

/**
 * Attack on invariants 6 and 7 (docs/integrity.md). Invariant 7: lineage without a valid proof is ordinary content,
 * the record is an original. Invariant 6: a replay republishes "the original headers in their order, without old
 * lineage headers, plus this replay's lineage headers". An original has no old lineage, yet replaying it drops every
 * header of its own that happens to be named like a lineage header (x-replay-source, x-replay-id, ...) and adds an
 * x-tenant-id header it never had: the replayed record's headers are not the original's plus lineage.
 */

let world: Awaited<ReturnType<typeof createTimeSkippingWorld>>;
const taskQueue = `attack-replay-headers-${Date.now()}`;

beforeAll(async () => {
  world = await createTimeSkippingWorld('attackreplayhdr', taskQueue);
  await world.h.startIngest();
});
afterAll(() => world?.close());

type Headers = Array<[string, string | null]>;
const decode = (stored: unknown): Headers =>
  (stored as Array<[string, string | null]>).map(([n, v]) => [
    Buffer.from(n, 'base64').toString(),
    v === null ? null : Buffer.from(v, 'base64').toString(),
  ]);

it("replaying an original keeps all of the original's headers, in order, and adds only the lineage headers", async () => {
  const { h, env } = world;
  await h.upstream.send({
    topic: h.topics.leads,
    acks: -1,
    messages: [
      {
        key: 'k-1',
        value: JSON.stringify({ tenant_id: 'hdr', n: 1 }),
        // An upstream system's own headers; no x-replay-proof, so by invariant 7 they are plain content.
        headers: { 'x-source': 'crm-import', 'x-replay-source': 'legacy-etl', 'x-replay-id': 'batch-2024-07' },
      },
    ],
  });
  const original = await eventually(async () => {
    const { rows } = await h.pool.query<{ id: number; kafka_headers: unknown; replay_count: number }>(
      "SELECT id, kafka_headers, replay_count FROM event_journal WHERE tenant_id = 'hdr' AND replay_count = 0",
    );
    return rows[0];
  }, 'original journaled');
  const originalHeaders = decode(original.kafka_headers);
  expect(originalHeaders).toEqual([
    ['x-source', 'crm-import'],
    ['x-replay-source', 'legacy-etl'],
    ['x-replay-id', 'batch-2024-07'],
  ]);

  await env.client.workflow.execute('replayEventWorkflow', {
    taskQueue,
    workflowId: `attack-hdr-${Date.now()}`,
    args: [{ eventId: Number(original.id), source: 'operator_api', requestedBy: 'test' }],
    workflowExecutionTimeout: '1h',
  });
  const replayed = await eventually(async () => {
    const { rows } = await h.pool.query<{ kafka_headers: unknown }>(
      "SELECT kafka_headers FROM event_journal WHERE tenant_id = 'hdr' AND replay_count > 0",
    );
    return rows[0];
  }, 'replay journaled');
  const replayHeaders = decode(replayed.kafka_headers);
  // A replay without a transform carries every lineage header but the transform's.
  const { transform: _transformHeader, ...plainLineage } = LINEAGE_HEADERS;
  const lineageNames = new Set<string>(Object.values(plainLineage));

  // kafkajs takes headers as an object, so values of one name travel together (in order) where the name first
  // occurs: per name, the original's values come first, unchanged, then this replay's lineage value.
  const values = (list: Headers, name: string) => list.filter(([n]) => n === name).map(([, v]) => v);
  for (const name of new Set(originalHeaders.map(([n]) => n))) {
    expect(values(replayHeaders, name).slice(0, values(originalHeaders, name).length)).toEqual(
      values(originalHeaders, name),
    );
  }
  // Nothing of the original is lost, and exactly the five lineage headers of this replay are added.
  const added = [...replayHeaders];
  for (const header of originalHeaders) {
    const at = added.findIndex(([n, v]) => n === header[0] && v === header[1]);
    expect(at).toBeGreaterThanOrEqual(0);
    added.splice(at, 1);
  }
  expect(added.map(([name]) => name).sort()).toEqual([...lineageNames].sort());
});
