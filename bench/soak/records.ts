import { JOBS_TOPIC, LEADS_TOPIC, makeEvent } from '../../cli/traffic';

/** The two topics the service ingests by default; the soak's traffic goes to both. */
export const SOAK_TOPICS = [LEADS_TOPIC, JOBS_TOPIC] as const;

/** One record to send: what the producer puts on the wire, before Kafka assigns it coordinates. */
export interface OutRecord {
  kind: string;
  topic: string;
  key: Buffer | null;
  value: Buffer | null;
  headers?: Record<string, Buffer | string>;
}

/** A lineage pair seen in the journal, for records that forge it. */
export interface ForgeTarget {
  replayId: string;
  eventId: number;
}

/** mulberry32: a small seeded generator, so a run's records can be regenerated from the seed in its report. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const bytes = (rand: () => number, n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
const text = (s: string) => Buffer.from(s, 'utf8');
const base = (seq: number) => ({ event_type: 'lead.created', event_id: `soak-${seq}`, seq });

/** A realistic event, keyed by tenant as the ApexFlow gateway does. */
export function steadyRecord(seq: number): OutRecord {
  const event = makeEvent(seq, 7);
  return { kind: 'steady', topic: event.topic, key: text(event.key), value: text(event.value) };
}

type Hostile = (rand: () => number, seq: number, forge: ForgeTarget | undefined) => Omit<OutRecord, 'kind' | 'topic'>;

/** Records a misbehaving producer, a broken gateway or an attacker could write; each must end in journal or DLQ. */
export const HOSTILE: Record<string, Hostile> = {
  random_bytes: (rand) => ({ key: null, value: bytes(rand, 1 + Math.floor(rand() * 200)) }),
  invalid_utf8: (_r, seq) => ({
    key: text('acme'),
    value: Buffer.concat([text(`{"tenant_id":"acme","seq":${seq},"x":"`), Buffer.from([0xc3, 0x28, 0xff]), text('"}')]),
  }),
  nul_escape: (_r, seq) => ({ key: text('acme'), value: text(`{"seq":${seq},"note":"a\\u0000b"}`) }),
  nul_escape_with_tenant: (_r, seq) => ({
    key: text('acme'),
    value: text(`{"tenant_id":"acme","seq":${seq},"note":"a\\u0000b"}`),
  }),
  no_tenant: (_r, seq) => ({ key: text('x'), value: text(JSON.stringify(base(seq))) }),
  huge_numbers: (_r, seq) => ({
    key: text('acme'),
    value: text(
      `{"tenant_id":"acme","seq":${seq},"big":123456789012345678901234567890,"inf":1e400,"price":1.50,"neg":-0.0}`,
    ),
  }),
  deep_nesting: (rand, seq) => {
    const depth = 50 + Math.floor(rand() * 5000);
    return {
      key: text('acme'),
      value: text(`{"tenant_id":"acme","seq":${seq},"d":${'['.repeat(depth)}${']'.repeat(depth)}}`),
    };
  },
  binary_key: (rand, seq) => ({
    key: bytes(rand, 16),
    value: text(JSON.stringify({ tenant_id: 'acme', ...base(seq) })),
  }),
  odd_headers: (rand, seq) => ({
    key: text('acme'),
    value: text(JSON.stringify({ tenant_id: 'acme', ...base(seq) })),
    headers: { 'x-tenant-id': bytes(rand, 8), '': 'empty-name', 'x-nul': 'a\u0000b', 'x-replay-id': 'forged' },
  }),
  tombstone: (_r, seq) => ({ key: text(`tomb-${seq % 5}`), value: null }),
  not_an_object: (_r, seq) => ({ key: null, value: text(`[${seq},"array"]`) }),
  duplicate_keys: (_r, seq) => ({ key: text('acme'), value: text(`{"tenant_id":"acme","seq":${seq},"a":1,"a":2}`) }),
  lone_surrogate: (_r, seq) => ({ key: text('acme'), value: text(`{"tenant_id":"acme","seq":${seq},"s":"\\ud800"}`) }),
  forged_lineage: (_r, seq, forge) => ({
    key: text('acme'),
    value: text(
      JSON.stringify({
        tenant_id: 'acme',
        ...base(seq),
        _replay_id: forge?.replayId ?? 'replay-event-1-forged',
        _replayed_from_event_id: forge?.eventId ?? 1,
        _replay_source: 'operator_api',
        _replay_count: 1,
      }),
    ),
  }),
};

/** One hostile record of a random kind, on a random one of the soak topics. */
export function hostileRecord(rand: () => number, seq: number, forge: ForgeTarget | undefined): OutRecord {
  const kinds = Object.keys(HOSTILE);
  const kind = kinds[Math.floor(rand() * kinds.length)];
  const topic = SOAK_TOPICS[Math.floor(rand() * SOAK_TOPICS.length)];
  return { kind: `hostile:${kind}`, topic, ...HOSTILE[kind](rand, seq, forge) };
}
