import type { Producer, ProducerBatch } from 'kafkajs';
import { keyWaves, publishPage } from '../../activities/ordered-publish';
import type { OutgoingEvent } from '../../activities/replay-messages';
import { replayMessageOf, toReplayMessage } from '../../journal/lineage';
import { applyTransform, replayTransform, transformProblem, type PatchOperation } from '../../journal/transform';
import type { ReplayRow } from '../../repository/event-journal';

const KEY = Buffer.from('lineage-key');
const row = (payload_text: string, id = 7): ReplayRow => ({
  id,
  tenant_id: 'acme',
  topic: 'apexflow.leads.created',
  replay_count: 0,
  payload_text,
  kafka_key: null,
  kafka_key_bytes: Buffer.from('lead-1'),
  kafka_headers: null,
  legacy: false,
});
const lineage = { source: 'range', replayId: 'replay-range-1' };

describe('transformProblem', () => {
  it.each<[PatchOperation[], RegExp]>([
    [[], /no operations/],
    [[{ op: 'add', path: 'channel', value: 1 }], /operation 0 \(add\) path "channel" is not a JSON Pointer/],
    [[{ op: 'remove', path: '/a~2b' }], /"~" must be followed by 0 or 1/],
    [[{ op: 'replace', path: '', value: {} }], /names the whole payload/],
    [[{ op: 'add', path: '/_replay_id', value: 'x' }], /lineage field _replay_id/],
    [[{ op: 'remove', path: '/_replay_transform' }], /lineage field _replay_transform/],
    [[{ op: 'copy', from: '/_replayed_from_event_id', path: '/x' }], /operation 0 \(copy\) from .*lineage field/],
    [
      [
        { op: 'test', path: '/a', value: 1 },
        { op: 'move', from: '/a', path: '/_replay_count' },
      ],
      /operation 1 \(move\)/,
    ],
  ])('refuses %j', (patch, problem) => {
    expect(transformProblem(patch)).toMatch(problem);
  });

  it('accepts a rename, an addition and a test of the whole payload', () => {
    const patch: PatchOperation[] = [
      { op: 'test', path: '', value: { a: 1 } },
      { op: 'move', from: '/name', path: '/full_name' },
      { op: 'add', path: '/channel', value: 'web' },
    ];
    expect(transformProblem(patch)).toBeUndefined();
  });
});

describe('applyTransform', () => {
  const transform = replayTransform([
    { op: 'move', from: '/name', path: '/full_name' },
    { op: 'add', path: '/channel', value: 'web' },
  ]);

  it('patches the payload and names the transform by a hash of its patch', () => {
    expect(applyTransform('{"name": "Zoë", "n": 1.50, "tenant_id": "acme"}', transform)).toEqual({
      ok: true,
      text: '{"n":1.5,"tenant_id":"acme","full_name":"Zoë","channel":"web"}',
    });
    expect(transform.id).toMatch(/^jp-[0-9a-f]{16}$/);
    expect(replayTransform(structuredClone(transform.patch)).id).toBe(transform.id);
  });

  it('refuses an event whose operation fails, whose tenant it changes, or whose numbers a double cannot hold', () => {
    expect(applyTransform('{"tenant_id": "acme"}', transform)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/^operation 0 \(move \/full_name\) failed/),
    });
    const test = replayTransform([{ op: 'test', path: '/kind', value: 'lead' }]);
    expect(applyTransform('{"kind": "deal"}', test)).toMatchObject({ ok: false, reason: /operation 0 \(test/ });
    const retenant = replayTransform([{ op: 'replace', path: '/tenant_id', value: 'globex' }]);
    expect(applyTransform('{"tenant_id": "acme"}', retenant)).toEqual({
      ok: false,
      reason: 'the patch changes the tenant field tenant_id',
    });
    expect(applyTransform('{"name": "a", "big": 12345678901234567890}', transform)).toEqual({
      ok: false,
      reason: 'the payload holds a number (20 characters) that JSON Patch cannot carry exactly',
    });
    // Digits inside strings are text, and exact decimals in any notation pass.
    expect(applyTransform('{"name": "12345678901234567890", "x": 2.50e3, "y": -0.0}', transform).ok).toBe(true);
    // Numbers past 15 digits or with an exponent are compared; escaped quotes do not end a string.
    const exact = '{"name": "say \\"9007199254740993\\"", "a": 123456789012345, "b": 9007199254740992, "c": 0.1e1}';
    expect(applyTransform(exact, transform).ok).toBe(true);
    for (const inexact of ['9007199254740993', '-12345678901234567890', '1e400', '0.10000000000000000001']) {
      expect(applyTransform(`{"name": "a", "list": [1, ${inexact}]}`, transform)).toEqual({
        ok: false,
        reason: `the payload holds a number (${inexact.length} characters) that JSON Patch cannot carry exactly`,
      });
    }
  });
});

describe('replayMessageOf', () => {
  it('without a transform sends exactly what toReplayMessage sends', () => {
    const r = row('{"name": "a", "big": 123456789012345678901234567890}');
    expect(replayMessageOf(r, lineage, KEY)).toEqual({ ok: true, message: toReplayMessage(r, lineage, KEY) });
  });

  it('with a transform, sends the patched payload with the transform in its lineage and headers', () => {
    const transform = replayTransform([{ op: 'add', path: '/channel', value: 'web' }]);
    const built = replayMessageOf(row('{"name": "a"}'), { ...lineage, transform }, KEY);
    if (!built.ok) throw new Error(built.reason);
    expect(JSON.parse(built.message.value)).toEqual({
      name: 'a',
      channel: 'web',
      _replayed_from_event_id: 7,
      _replay_source: 'range',
      _replay_id: 'replay-range-1',
      _replay_count: 1,
      _replay_transform: transform.id,
    });
    expect(built.message.headers['x-replay-transform']).toEqual(Buffer.from(transform.id));
    const failed = replayMessageOf(
      row('{"x": 1}'),
      { ...lineage, transform: replayTransform([{ op: 'remove', path: '/y' }]) },
      KEY,
    );
    expect(failed).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/^Event 7: transform jp-\w+: operation 0/),
    });
  });
});

describe('per-key waves', () => {
  const event = (id: number, key: string | null, topic = 't'): OutgoingEvent => ({
    id,
    message: { topic, key: key === null ? null : Buffer.from(key), value: '{}', headers: {} },
  });

  it('puts the n-th event of each key in the n-th wave, in order', () => {
    const waves = keyWaves([
      event(1, 'a'),
      event(2, 'b'),
      event(3, 'a'),
      event(4, null),
      event(5, 'a'),
      event(6, 'a', 'u'),
    ]);
    expect(waves.map((wave) => wave.map((e) => e.id))).toEqual([[1, 2, 4, 6], [3], [5]]);
  });

  it('resumes after a failed wave without resending the waves before it', async () => {
    const sent: number[][] = [];
    let failAt = 2;
    const producer = {
      sendBatch: async (batch: ProducerBatch) => {
        const ids = batch.topicMessages!.flatMap((t) => t.messages.map((m) => Number(m.value)));
        if (--failAt === 0) throw new Error('broker gone (simulated)');
        sent.push(ids);
        return [];
      },
    } as unknown as Producer;
    const outgoing = [1, 2, 3, 4].map((id) => ({
      id,
      message: { topic: 't', key: Buffer.from(id % 2 ? 'odd' : 'even'), value: String(id), headers: {} },
    }));
    let progress: number[] = [];
    const send = { ordering: 'per_key' as const, replayId: 'r', onWave: (ids: number[]) => (progress = [...ids]) };
    await expect(publishPage(producer, outgoing, send)).rejects.toThrow('simulated');
    expect(progress).toEqual([1, 2]);
    await publishPage(producer, outgoing, { ...send, sent: progress });
    expect(sent).toEqual([
      [1, 2],
      [3, 4],
    ]);
  });
});
