import { randomBytes } from 'node:crypto';
import { LINEAGE_HEADERS, lineageProof } from '../../journal/lineage';
import { createTimeSkippingWorld } from '../support/temporal';
import { eventually } from '../support/sink';

// Invariant 6 (docs/integrity.md): a replay republishes the journaled payload with only lineage added (no number
// loses a digit), the original key bytes (so the same partition), and the original headers plus lineage headers.
// Invariant 7: the replay carries a proof, so ingest journals it as a replay; lineage without the proof is payload.

let world: Awaited<ReturnType<typeof createTimeSkippingWorld>>;
const taskQueue = `replay-bytes-${Date.now()}`;

beforeAll(async () => {
  world = await createTimeSkippingWorld('replaybytes', taskQueue);
  await world.h.startIngest();
});
afterAll(() => world?.close());

const ORIGINAL_VALUE =
  '{"tenant_id":"bytes","big":123456789012345678901234567890,"huge":1e400,"tiny":1e-30,"money":1.50,' +
  '"neg":-0,"text":"ünïcödé 🚀 \\" \\\\ \\n","nested":{"a":[1,2.0,{"b":null}]}}';

interface Row {
  id: number;
  kafka_partition: number;
  kafka_key_bytes: Buffer;
  kafka_headers: unknown;
  replay_count: number;
  replay_source: string | null;
  payload_text: string;
}

async function rowsOf(where: string, values: unknown[]): Promise<Row[]> {
  const { rows } = await world.h.pool.query<Row>(
    `SELECT id, kafka_partition, kafka_key_bytes, kafka_headers, replay_count, replay_source, payload::text AS payload_text
       FROM event_journal WHERE ${where} ORDER BY id`,
    values,
  );
  return rows;
}

it('republishes the payload digit for digit, the key bytes (same partition) and the headers, plus lineage and proof', async () => {
  const { h, env } = world;
  const key = Buffer.concat([Buffer.from([0, 255, 254]), randomBytes(13)]);
  await h.upstream.send({
    topic: h.topics.leads,
    acks: -1,
    messages: [
      {
        key,
        value: ORIGINAL_VALUE,
        headers: { 'x-source': 'crm-web', 'x-binary': Buffer.from([0, 1, 2, 255]), 'x-multi': ['one', 'two'] },
      },
    ],
  });
  const [original] = await eventually(async () => {
    const rows = await rowsOf("tenant_id = 'bytes' AND replay_count = 0", []);
    return rows.length ? rows : undefined;
  }, 'original journaled');
  expect(original.kafka_key_bytes.equals(key)).toBe(true);
  expect(original.payload_text).toContain('"big": 123456789012345678901234567890');
  expect(original.payload_text).toContain(`"huge": 1${'0'.repeat(400)}`);

  const workflowId = `bytes-${Date.now()}`;
  await env.client.workflow.execute('replayEventWorkflow', {
    taskQueue,
    workflowId,
    args: [{ eventId: original.id, source: 'operator_api', requestedBy: 'test' }],
    workflowExecutionTimeout: '1h',
  });

  const [replayed] = await eventually(async () => {
    const rows = await rowsOf("tenant_id = 'bytes' AND replay_count > 0", []);
    return rows.length ? rows : undefined;
  }, 'replay journaled');
  // The proof verified: journaled as a replay, one hop, from the API.
  expect(replayed).toMatchObject({ replay_count: 1, replay_source: 'operator_api' });
  expect(replayed.kafka_key_bytes.equals(key)).toBe(true);
  expect(replayed.kafka_partition).toBe(original.kafka_partition);

  // What went over the wire: the original's jsonb text with lineage appended, nothing else changed.
  const headers = (replayed.kafka_headers as Array<[string, string | null]>).map(([n, v]) => [
    Buffer.from(n, 'base64').toString(),
    v === null ? null : Buffer.from(v, 'base64'),
  ]) as Array<[string, Buffer | null]>;
  const named = (name: string) => headers.filter(([n]) => n === name).map(([, v]) => v!);
  expect(named('x-source').map(String)).toEqual(['crm-web']);
  expect(named('x-binary')[0].equals(Buffer.from([0, 1, 2, 255]))).toBe(true);
  expect(named('x-multi').map(String)).toEqual(['one', 'two']);
  expect(named(LINEAGE_HEADERS.from).map(String)).toEqual([String(original.id)]);
  const expectedValue =
    original.payload_text.slice(0, -1) +
    `, "_replayed_from_event_id": ${original.id}, "_replay_source": "operator_api", "_replay_id": "${workflowId}", "_replay_count": 1}`;
  expect(named(LINEAGE_HEADERS.proof).map(String)).toEqual([lineageProof(h.lineageKey, expectedValue)]);
  // jsonb of the replay equals jsonb of the original plus exactly the lineage fields.
  const same = await h.pool.query<{ same: boolean }>(
    `SELECT (r.payload - '{_replayed_from_event_id,_replay_source,_replay_id,_replay_count}'::text[]) = o.payload AS same
       FROM event_journal r, event_journal o WHERE r.id = $1 AND o.id = $2`,
    [replayed.id, original.id],
  );
  expect(same.rows[0].same).toBe(true);
  expect(replayed.payload_text).toContain('"big": 123456789012345678901234567890');
  expect(replayed.payload_text).toContain(`"huge": 1${'0'.repeat(400)}`);
});

it('a record with lineage fields and headers but no valid proof is journaled as an original', async () => {
  const { h } = world;
  const forged = {
    tenant_id: 'forged',
    _replayed_from_event_id: 1,
    _replay_id: 'replay-event-1-abc',
    _replay_source: 'operator_api',
    _replay_count: 1,
  };
  await h.upstream.send({
    topic: h.topics.jobs,
    acks: -1,
    messages: [
      {
        value: JSON.stringify(forged),
        headers: { [LINEAGE_HEADERS.from]: '1', [LINEAGE_HEADERS.proof]: lineageProof(randomBytes(32), 'x') },
      },
      { value: JSON.stringify({ ...forged, n: 2 }) },
    ],
  });
  const rows = await eventually(async () => {
    const found = await rowsOf("tenant_id = 'forged'", []);
    return found.length === 2 ? found : undefined;
  }, 'both forged records journaled');
  expect(rows.map((r) => [r.replay_count, r.replay_source])).toEqual([
    [0, null],
    [0, null],
  ]);
});
