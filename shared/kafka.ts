import {
  Kafka,
  logLevel as KafkaLogLevel,
  Partitioners,
  type Admin,
  type InstrumentationEvent,
  type LogEntry,
  type Message,
  type Producer,
  type ProducerBatch,
  type ProducerRecord,
  type RecordMetadata,
  type TopicMessages,
} from 'kafkajs';
import type { Logger } from './logger';
import { closeWithin } from './stop-clock';

const LEVELS: Record<number, 'error' | 'warn' | 'info' | 'debug'> = {
  [KafkaLogLevel.ERROR]: 'error',
  [KafkaLogLevel.WARN]: 'warn',
  [KafkaLogLevel.INFO]: 'info',
  [KafkaLogLevel.DEBUG]: 'debug',
};

// kafkajs warns about this at every producer creation; createProducer answers it by renewing the producer id after
// every send that failed (see there), so the line would only teach operators to ignore warnings.
const ANSWERED_WARNING = 'Limiting retries for the idempotent producer may invalidate EoS guarantees';

/** Bounds every request to a broker: a request without an answer fails after this long instead of hanging. */
export const KAFKA_REQUEST_TIMEOUT_MS = 15_000;

/** A kafkajs client whose own logs go through pino (warn and above: kafkajs is chatty at info). */
export function createKafka(brokers: string[], clientId: string, log: Logger): Kafka {
  const kafkaLog = log.child({ lib: 'kafkajs' });
  return new Kafka({
    clientId,
    brokers,
    connectionTimeout: 3000,
    requestTimeout: KAFKA_REQUEST_TIMEOUT_MS,
    enforceRequestTimeout: true,
    retry: { initialRetryTime: 300, retries: 8, maxRetryTime: 10_000 },
    logLevel: KafkaLogLevel.WARN,
    logCreator:
      () =>
      ({ level, log: entry }: LogEntry) => {
        const { message, ...rest } = entry;
        if (message === ANSWERED_WARNING) return;
        kafkaLog[LEVELS[level] ?? 'info'](rest, message);
      },
  });
}

/**
 * Creates the topics the service needs (auto-creation is off on the broker). Existing topics are left as they are,
 * so it is safe to call on every start.
 */
export async function ensureTopics(
  kafka: Kafka,
  topics: string[],
  numPartitions: number,
  replicationFactor = 1,
): Promise<string[]> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const missing = await missingTopics(admin, topics);
    if (missing.length > 0) {
      await admin.createTopics({
        waitForLeaders: true,
        topics: missing.map((topic) => ({ topic, numPartitions, replicationFactor })),
      });
    }
    return missing;
  } finally {
    await disconnectAdmin(admin);
  }
}

/** Which of these topics the cluster does not have. */
export async function missingTopics(admin: Admin, topics: string[]): Promise<string[]> {
  const existing = new Set(await admin.listTopics());
  return [...new Set(topics)].filter((t) => !existing.has(t));
}

/** Which topics the cluster has, from a list cached for a short time. */
export interface TopicCatalog {
  /**
   * Which of these topics the cluster does not have. The cached list answers first; a topic it lacks is looked up
   * again at the broker, so a topic created a moment ago is never reported missing. `fresh` skips the cache.
   */
  missing(topics: string[], opts?: { fresh?: boolean }): Promise<string[]>;
  close(): Promise<void>;
}

/** How long a topic list stays good, and the most one lookup may take (the API answers while Kafka is down). */
const CATALOG_TTL_MS = 10_000;
const CATALOG_LOOKUP_TIMEOUT_MS = 5_000;

/**
 * How long a stop waits for an admin client to disconnect. kafkajs's disconnect waits for the requests in flight, which
 * a frozen broker answers only at their request timeout; an admin client only reads, so it is left for the exit.
 */
export const ADMIN_DISCONNECT_TIMEOUT_MS = 3_000;

/**
 * Waits at most `ms` (cut by the stop's clock) for a Kafka client's disconnect. One still disconnecting then is
 * abandoned (left for the exit), which loses nothing: a consumer commits offsets only after Postgres, so its
 * uncommitted batches come again to the partition's next owner; a producer's unacknowledged send is sent again by its
 * activity's retry. Never rejects; resolves whether it disconnected.
 */
export function disconnectWithin(
  disconnect: Promise<void>,
  ms: number,
  log: Pick<Logger, 'warn'> | undefined,
  what: string,
  fields: Record<string, unknown> = {},
): Promise<boolean> {
  return closeWithin(disconnect, ms, log, what, { verb: 'disconnect', fields });
}

/** Disconnects an admin client, giving up after `ms` (cut by the stop's clock) with a warning; never rejects. */
export async function disconnectAdmin(
  admin: Pick<Admin, 'disconnect'>,
  ms = ADMIN_DISCONNECT_TIMEOUT_MS,
  log?: Pick<Logger, 'warn'>,
): Promise<void> {
  await closeWithin(admin.disconnect(), ms, log, 'A Kafka admin client', { verb: 'disconnect' });
}

/** A TopicCatalog on its own admin client, connected on first use and again after a failure. */
export function createTopicCatalog(
  kafka: Kafka,
  {
    ttlMs = CATALOG_TTL_MS,
    disconnectTimeoutMs = ADMIN_DISCONNECT_TIMEOUT_MS,
    log,
  }: { ttlMs?: number; disconnectTimeoutMs?: number; log?: Pick<Logger, 'warn'> } = {},
): TopicCatalog {
  // Few retries: a caller waiting on this (an HTTP request, an activity) would rather hear "unreachable" soon.
  const admin = kafka.admin({ retry: { retries: 2, initialRetryTime: 200, maxRetryTime: 1000 } });
  let connected: Promise<void> | undefined;
  let cached: { topics: Set<string>; at: number } | undefined;
  let lookup: Promise<Set<string>> | undefined;

  const lookUp = () =>
    (lookup ??= (async () => {
      let timer: NodeJS.Timeout | undefined;
      try {
        connected ??= admin.connect();
        const timeout = new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`Kafka did not list its topics within ${CATALOG_LOOKUP_TIMEOUT_MS} ms`)),
            CATALOG_LOOKUP_TIMEOUT_MS,
          );
        });
        const topics = new Set(await Promise.race([connected.then(() => admin.listTopics()), timeout]));
        cached = { topics, at: Date.now() };
        return topics;
      } catch (err) {
        connected = undefined;
        throw err;
      } finally {
        clearTimeout(timer);
        lookup = undefined;
      }
    })());

  return {
    async missing(topics, opts = {}) {
      const unique = [...new Set(topics)];
      const known = !opts.fresh && cached && Date.now() - cached.at < ttlMs ? cached.topics : await lookUp();
      const absent = unique.filter((t) => !known.has(t));
      if (absent.length === 0 || known !== cached?.topics || opts.fresh) return absent;
      const fresh = await lookUp();
      return absent.filter((t) => !fresh.has(t));
    },
    async close() {
      if (connected) await disconnectAdmin(admin, disconnectTimeoutMs, log);
    },
  };
}

/** The kafkajs error code of a topic or partition the broker does not have. */
const UNKNOWN_TOPIC = 'UNKNOWN_TOPIC_OR_PARTITION';

/** True when err (or an error it wraps) says the broker does not have a topic or partition. */
export function isUnknownTopicError(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 10; e = (e as { cause?: unknown }).cause, depth++) {
    if ((e as { type?: unknown }).type === UNKNOWN_TOPIC) return true;
  }
  return false;
}

// Broker answers that no retry of the same records can change (kafkajs error types).
const REFUSED_RECORDS = new Set([
  'MESSAGE_TOO_LARGE',
  'RECORD_LIST_TOO_LARGE',
  'INVALID_RECORD',
  'INVALID_TOPIC_EXCEPTION',
  'TOPIC_AUTHORIZATION_FAILED',
]);

/** The broker's error type when it refused the records themselves (too large, not allowed), else undefined. */
export function refusedRecordsError(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && depth < 10; e = (e as { cause?: unknown }).cause, depth++) {
    const type = (e as { type?: unknown }).type;
    if (typeof type === 'string' && REFUSED_RECORDS.has(type)) return type;
  }
  return undefined;
}

/** The producer replays publish through: a kafkajs Producer that also knows which topics exist. */
export interface ReplayProducer extends Producer {
  /** Which of these topics the cluster does not have (TopicCatalog.missing, on the producer's own client). */
  missingTopics(topics: string[], opts?: { fresh?: boolean }): Promise<string[]>;
  /** Starts over on a new kafkajs producer (new producer id, no remembered topics); sends in flight finish first. */
  renew(reason: string): void;
}

/**
 * Throws when a send resolved without an acknowledgement for a partition it put messages on. kafkajs 2.2.4 does that
 * when a broker fails mid-send: its retry resends only to the brokers that had not answered, so the failed broker's
 * partitions, moved by the leader election to brokers that had answered, are never sent and the send still succeeds
 * (kafkajs issue #1303; found by the cluster fault suite, which SIGKILLs a leader broker mid-replay). The error fails
 * the send like any other: the producer starts over and the caller's retry sends the page again, whose copies that
 * did arrive the journal keeps once (one row per replay and source event).
 */
export function refuseUnacknowledged(
  sent: TopicMessages[],
  acknowledged: RecordMetadata[],
  partitionOf: (message: Message) => number | undefined,
): void {
  const acked = new Set(acknowledged.map((m) => `${m.topicName}\u0000${m.partition}`));
  const missing = new Set<string>();
  for (const { topic, messages } of sent) {
    for (const message of messages) {
      const partition = message.partition ?? partitionOf(message);
      if (partition === undefined || !acked.has(`${topic}\u0000${partition}`)) {
        missing.add(`${topic}[${partition ?? '?'}]`);
      }
    }
  }
  if (missing.size > 0) {
    throw new Error(
      `Kafka acknowledged the send without partition(s) ${[...missing].join(', ')}: those messages may not have been written; sending again`,
    );
  }
}

/** Retries of one send inside kafkajs (about 10 s of backoff); the activity's retry policy is above them. */
export const PRODUCER_RETRIES = 5;
/** How long the broker may wait for the in-sync replicas' acks of one produce request. */
export const PRODUCE_ACK_TIMEOUT_MS = 10_000;

/**
 * How long disconnect() waits for the producer at most (createProducer's disconnectTimeoutMs): kafkajs waits for the
 * requests in flight, which a frozen broker answers only at their timeout. A producer still sending then is left for
 * the exit: the activity that sent has ended without an acknowledgement, so its retry sends the page again, and the
 * journal keeps one row per replay and source event.
 */
export const PRODUCER_DISCONNECT_TIMEOUT_MS = 3_000;

type Listener = (event: InstrumentationEvent<unknown>) => void;

interface Generation {
  producer: Producer;
  connecting?: Promise<void>;
  inFlight: number;
  retired: boolean;
  removers: Map<unknown, () => void>;
}

/**
 * An idempotent producer (acks from all in-sync replicas, one request in flight per broker so retries never reorder
 * or duplicate) with a finite number of retries, so that a send always ends. kafkajs requires at least one retry for
 * idempotence and warns when they are finite, for a reason that is real: after it gives up on a batch it rolls the
 * partition's sequence number back, and if that batch did reach the broker the next batch with the same sequence
 * numbers is acknowledged as a duplicate and dropped (or the partition wedges on OUT_OF_ORDER_SEQUENCE_NUMBER).
 * A deleted topic also stays in every metadata request of a kafkajs producer that once sent to it, failing all of
 * its sends. So after any failed send this producer starts over on a new kafkajs producer (a new producer id, no
 * remembered topics); sends already in flight finish on the old one, which is then disconnected.
 * Keys go to partitions the way the Java client puts them (murmur2, kafkajs' default since 2.0).
 */
export function createProducer(
  kafka: Kafka,
  log?: Logger,
  { disconnectTimeoutMs = PRODUCER_DISCONNECT_TIMEOUT_MS }: { disconnectTimeoutMs?: number } = {},
): ReplayProducer {
  const catalog = createTopicCatalog(kafka, { log });
  const listeners: [Parameters<Producer['on']>[0], Listener][] = [];
  let wanted = false;

  // The partition each message was last given, to check that every partition of a send was acknowledged.
  const assigned = new WeakMap<Message, number>();
  const generation = (): Generation => {
    const producer = kafka.producer({
      createPartitioner: () => {
        const partition = Partitioners.DefaultPartitioner();
        return (args) => {
          const chosen = partition(args);
          assigned.set(args.message, chosen);
          return chosen;
        };
      },
      idempotent: true,
      maxInFlightRequests: 1,
      retry: { retries: PRODUCER_RETRIES, initialRetryTime: 300, maxRetryTime: 5_000 },
    });
    const gen: Generation = { producer, inFlight: 0, retired: false, removers: new Map() };
    for (const [event, listener] of listeners) gen.removers.set(listener, producer.on(event, listener));
    return gen;
  };
  let current = generation();

  const release = (gen: Generation) => {
    if (gen.retired && gen.inFlight === 0) void gen.producer.disconnect().catch(() => undefined);
  };
  const renew = (reason: string) => {
    const old = current;
    current = generation();
    old.retired = true;
    log?.warn({ reason }, 'Kafka producer renewed (new producer id, topics looked up again)');
    release(old);
  };

  const sending = async (
    sent: TopicMessages[],
    fn: (p: Producer) => Promise<RecordMetadata[]>,
  ): Promise<RecordMetadata[]> => {
    const gen = current;
    gen.inFlight++;
    try {
      if (!wanted) throw new Error('The producer is disconnected');
      await (gen.connecting ??= gen.producer.connect());
      const acknowledged = await fn(gen.producer);
      refuseUnacknowledged(sent, acknowledged, (message) => assigned.get(message));
      return acknowledged;
    } catch (err) {
      if (gen === current) renew((err as Error).message);
      throw err;
    } finally {
      gen.inFlight--;
      release(gen);
    }
  };

  const facade: ReplayProducer = {
    async connect() {
      wanted = true;
      await (current.connecting ??= current.producer.connect()).catch((err: unknown) => {
        current.connecting = undefined;
        throw err;
      });
    },
    async disconnect() {
      wanted = false;
      current.retired = true;
      await Promise.all([
        disconnectWithin(current.producer.disconnect(), disconnectTimeoutMs, log, 'The Kafka producer'),
        catalog.close(),
      ]);
    },
    send: (record: ProducerRecord) => sending([record], (p) => p.send({ timeout: PRODUCE_ACK_TIMEOUT_MS, ...record })),
    sendBatch: (batch: ProducerBatch) =>
      sending(batch.topicMessages ?? [], (p) => p.sendBatch({ timeout: PRODUCE_ACK_TIMEOUT_MS, ...batch })),
    isIdempotent: () => true,
    get events() {
      return current.producer.events;
    },
    on(event: Parameters<Producer['on']>[0], listener: (event: never) => void) {
      listeners.push([event, listener as Listener]);
      current.removers.set(listener, current.producer.on(event, listener as Listener));
      return () => {
        listeners.splice(
          listeners.findIndex(([, l]) => l === listener),
          1,
        );
        current.removers.get(listener)?.();
      };
    },
    transaction: () => Promise.reject(new Error('createProducer makes no transactional producer')),
    logger: () => current.producer.logger(),
    missingTopics: (topics, opts) => catalog.missing(topics, opts),
    renew,
  };
  return facade;
}
