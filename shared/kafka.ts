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
  type Transaction,
} from 'kafkajs';
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from './logger';
import { closeWithin } from './stop-clock';
import { eitherSignal, queueTurn, withTimeout } from './timeout';

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
  /** Starts over on new kafkajs producers (no remembered topics); sends in flight finish first. */
  renew(reason: string): void;
  /** The prefix of its transactional ids: recorded with each replay page, for fenceOthers once its holder is gone. */
  readonly fenceScope: string;
  /** Fences the transactional ids of another producer's fenceScope (see fenceScopeOf). */
  fenceOthers(scope: string): Promise<void>;
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
/** A listener registered on the replay producer for one event (each `on` call is one). */
interface Registration {
  event: Parameters<Producer['on']>[0];
  listener: Listener;
}

/** How many sends one replay producer runs at once: each is a transaction, and a transactional id runs one at a time. */
export const REPLAY_PRODUCER_SLOTS = 8;

/** How long a send may stay in its transaction before the broker aborts it (and fences its producer). */
export const REPLAY_TRANSACTION_TIMEOUT_MS = 60_000;

/**
 * How often the broker looks for transactions past their timeout (`transaction.abort.timed.out.transaction.cleanup
 * .interval.ms`, its default; set so in both stack profiles): a dead worker's open transaction holds read-committed
 * consumers of its partitions for up to REPLAY_TRANSACTION_TIMEOUT_MS plus this.
 */
export const BROKER_TRANSACTION_ABORT_CHECK_MS = 10_000;

/**
 * How long a commit that got no answer is asked again (commitSettled), from its first ask's failure, before the send
 * fails as ambiguous. No ask is started after it; the one under way ends within kafkajs's bounds: its EndTxn within
 * one request timeout, but its coordinator lookup retries refused connections (ECONNREFUSED) with the client's
 * retries, about 40 s in all (tried: 12 s of refused connections were one ask that then succeeded). A re-ask refused
 * as fenced adds a read back (READ_BACK_MS).
 */
export const COMMIT_SETTLE_MS = 20_000;
const COMMIT_ASK_PAUSE_MS = 250;

/** Refuses a send (before it produces, or before its commit) whose attempt has less than COMMIT_PHASE_MS left. */
function refuseLateCommit(settleBy: number | undefined, what: string): void {
  if (settleBy === undefined) return;
  const left = Math.round(settleBy - performance.now());
  if (left >= COMMIT_PHASE_MS) return;
  throw new Error(
    `The replay send ${what}: ${left} ms left of its attempt, under the ${COMMIT_PHASE_MS} ms a commit is given (its retry sends it)`,
  );
}

/** Pauses between tries of a fence that failed (Kafka unreachable): 0.5 s doubling to 10 s. */
const FENCE_PAUSE_FIRST_MS = 500;
const FENCE_PAUSE_MAX_MS = 10_000;

interface Slot {
  id: string;
  producer: Producer;
  connecting?: Promise<void>;
  /** Whether connect was ever called on its kafkajs producer (it is disconnected at the end; the others need not be). */
  opened: boolean;
  /** Renewed before its next send (renew(): a topic deleted, looked up again on a new kafkajs producer). */
  stale: boolean;
  /** The remover of each registration (`on`) on its current kafkajs producer, by the registration. */
  removers: Map<Registration, () => void>;
}

/**
 * The producer replays publish through. Every send is one Kafka transaction (acks from all in-sync replicas, one
 * request in flight per broker, idempotent) on one of REPLAY_PRODUCER_SLOTS transactional producers, whose ids
 * begin with the producer's `fenceScope`; its promise settles only once what it put into Kafka is settled for good:
 * committed, or fenced. A send that failed in any way (a request timed out, a broker lost, a partition unacknowledged:
 * kafkajs issue #1303, see refuseUnacknowledged) may still have requests in a broker (a frozen broker reads its
 * socket when it runs again and appends what it finds). So its slot starts over on a new kafkajs producer with the
 * same transactional id before the send rejects: Kafka bumps the id's epoch, aborts the open transaction and, once
 * every partition of it has its abort marker, answers; a request of the old epoch that reaches a partition after that
 * is refused, one that reached it before is aborted (consumers reading committed records never see it). The fence is
 * tried again until it succeeds (a broker may be down for long); the send stays unsettled meanwhile, and forever if
 * the producer is disconnected first (the process is ending: an erasure's waiter fences its ids, fenceOthers).
 * The new kafkajs producer also forgets the topics the old one knew (a deleted topic stays in every metadata request
 * of a kafkajs producer that once sent to it, failing all of its sends).
 * Keys go to partitions the way the Java client puts them (murmur2, kafkajs' default since 2.0).
 */
export function createProducer(
  kafka: Kafka,
  log?: Logger,
  { disconnectTimeoutMs = PRODUCER_DISCONNECT_TIMEOUT_MS }: { disconnectTimeoutMs?: number } = {},
): ReplayProducer {
  const catalog = createTopicCatalog(kafka, { log });
  const registrations: Registration[] = [];
  let wanted = false;
  const fenceScope = `crm-events-replay:${hostname()}:${process.pid}:${randomUUID()}`;

  // The partition each message was last given, to check that every partition of a send was acknowledged.
  const assigned = new WeakMap<Message, number>();
  const kafkaProducer = (id: string): Producer =>
    kafka.producer({
      createPartitioner: () => {
        const partition = Partitioners.DefaultPartitioner();
        return (args) => {
          const chosen = partition(args);
          assigned.set(args.message, chosen);
          return chosen;
        };
      },
      transactionalId: id,
      transactionTimeout: REPLAY_TRANSACTION_TIMEOUT_MS,
      idempotent: true,
      maxInFlightRequests: 1,
      retry: { retries: PRODUCER_RETRIES, initialRetryTime: 300, maxRetryTime: 5_000 },
    });
  const listen = (slot: Slot) => {
    for (const r of registrations) slot.removers.set(r, slot.producer.on(r.event, r.listener));
  };
  const slots: Slot[] = Array.from({ length: REPLAY_PRODUCER_SLOTS }, (_, i) => {
    const slot: Slot = {
      id: `${fenceScope}:${i}`,
      producer: undefined!,
      stale: false,
      opened: false,
      removers: new Map(),
    };
    slot.producer = kafkaProducer(slot.id);
    listen(slot);
    return slot;
  });
  const free = [...slots];
  const waiting: ((slot: Slot) => void)[] = [];
  /** A free slot, or the first one given back; a wait given up (its attempt over: `signal`) leaves the queue. */
  const take = (signal?: AbortSignal): Promise<Slot> =>
    free.length > 0 ? Promise.resolve(free.pop()!) : queueTurn(waiting, signal);
  const give = (slot: Slot) => {
    const next = waiting.shift();
    if (next) next(slot);
    else free.push(slot);
  };

  /** The slot on a new kafkajs producer with its id, connected: its id's epoch bumped, its open transaction aborted. */
  const fence = async (slot: Slot, reason: string) => {
    log?.warn(
      { reason, transactionalId: slot.id },
      'Kafka replay producer fenced (its transaction aborted, new epoch)',
    );
    for (let pause = FENCE_PAUSE_FIRST_MS; ; pause = Math.min(pause * 2, FENCE_PAUSE_MAX_MS)) {
      // Ending (disconnected): no new connection; the send stays unsettled, its holder's row runs out, and an
      // erasure's waiter fences its ids (fenceOthers).
      if (!wanted) await new Promise<never>(() => undefined);
      const old = slot.producer;
      for (const remove of slot.removers.values()) remove();
      slot.removers.clear();
      void disconnectWithin(old.disconnect(), disconnectTimeoutMs, log, 'A fenced Kafka producer').catch(
        () => undefined,
      );
      slot.producer = kafkaProducer(slot.id);
      listen(slot);
      slot.opened = true;
      slot.connecting = connectTransactional(slot.producer);
      try {
        await slot.connecting;
        slot.stale = false;
        return;
      } catch (err) {
        slot.connecting = undefined;
        log?.warn({ err, transactionalId: slot.id }, 'Fencing a Kafka replay producer failed; trying again');
      }
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  };

  const sending = async (
    sent: TopicMessages[],
    fn: (p: Transaction) => Promise<RecordMetadata[]>,
  ): Promise<RecordMetadata[]> => {
    const guard = sendGuards.getStore();
    const { signal, settleBy: attemptEnd, lease } = sendAttempts.getStore() ?? {};
    // The send's end: its attempt's start-to-close, and the time the server has confirmed it will not end the attempt
    // before (its lease), whichever is first; read again at each check (a lease only grows).
    const settleBy = () => (lease ? Math.min(attemptEnd ?? Infinity, lease.until()) : attemptEnd);
    if (!wanted) throw new Error('The producer is disconnected');
    signal?.throwIfAborted();
    const slot = await take(signal);
    try {
      if (slot.stale) await fence(slot, 'renewed');
      slot.opened = true;
      await (slot.connecting ??= connectTransactional(slot.producer)).catch((err: unknown) => {
        slot.connecting = undefined;
        throw err;
      });
      // The server's word that the attempt lives on for a commit phase yet (its heartbeats reach it): a send of an
      // attempt the server may already have ended beside its retry waits here, and produces nothing once it is known to
      // have ended (its signal).
      await lease?.hold(SEND_LEASE_MS, signal);
      // The slot's epoch is fixed from here on (only a fence after a failure changes it): a send the guard lets through
      // is one a later fence of this producer's scope supersedes.
      await guard?.();
      // Its attempt over while it waited for a slot, a fence or the guard: nothing of it is sent (the attempt's retry
      // sends the page; sent now as well, it would be in the topic twice).
      signal?.throwIfAborted();
      refuseLateCommit(settleBy(), 'produces nothing');
      const transaction = await slot.producer.transaction();
      try {
        const acknowledged = await fn(transaction);
        refuseUnacknowledged(sent, acknowledged, (message) => assigned.get(message));
        // Too late to settle a commit within the attempt: aborted (the fence below), never committed behind its retry.
        refuseLateCommit(settleBy(), 'is aborted');
        const committing = commitSettled(transaction, slot.id, log, {
          // Fenced: this kafkajs producer's epoch is gone (and its transaction left open on this side), so the slot
          // starts on a new one before its next send, whatever is read.
          readBack: () => {
            slot.stale = true;
            return committedReadBack(kafka, acknowledged, `${fenceScope}:read-back`, log);
          },
        });
        // Unsettled at the attempt's end: failed (and fenced below, as any failed send); its outcome unknown.
        committing.catch(() => undefined); // unheard once the attempt's end has been reached
        const end = settleBy();
        await (end === undefined
          ? committing
          : withTimeout(
              committing,
              Math.max(0, end - performance.now()),
              `The commit of ${slot.id} was not settled before its attempt's end (it may have committed)`,
            ));
        return acknowledged;
      } catch (err) {
        await fence(slot, (err as Error).message);
        throw err;
      }
    } finally {
      give(slot);
    }
  };

  const facade: ReplayProducer = {
    async connect() {
      wanted = true;
      // One slot connected now (Kafka reachable, the transactional id's epoch taken); the others on their first send.
      const first = slots[0];
      first.opened = true;
      await (first.connecting ??= connectTransactional(first.producer)).catch((err: unknown) => {
        first.connecting = undefined;
        throw err;
      });
    },
    async disconnect() {
      wanted = false;
      // The slots that ever connected, under one bound (a frozen broker holds them all: one warning, not eight).
      const connected = slots.filter((slot) => slot.opened);
      await Promise.all([
        disconnectWithin(
          Promise.all(connected.map((slot) => slot.producer.disconnect())).then(() => undefined),
          disconnectTimeoutMs,
          log,
          'The Kafka producer',
        ),
        catalog.close(),
      ]);
    },
    send: (record: ProducerRecord) => sending([record], (t) => t.send({ timeout: PRODUCE_ACK_TIMEOUT_MS, ...record })),
    sendBatch: (batch: ProducerBatch) =>
      sending(batch.topicMessages ?? [], (t) => t.sendBatch({ timeout: PRODUCE_ACK_TIMEOUT_MS, ...batch })),
    isIdempotent: () => true,
    get events() {
      return slots[0].producer.events;
    },
    on(event: Parameters<Producer['on']>[0], listener: (event: never) => void) {
      // One registration per call: the same listener on two events is two, each taken off by its own remover.
      const registration: Registration = { event, listener: listener as Listener };
      registrations.push(registration);
      for (const slot of slots) slot.removers.set(registration, slot.producer.on(event, registration.listener));
      return () => {
        const i = registrations.indexOf(registration);
        if (i >= 0) registrations.splice(i, 1);
        for (const slot of slots) {
          slot.removers.get(registration)?.();
          slot.removers.delete(registration);
        }
      };
    },
    transaction: () => Promise.reject(new Error('createProducer runs each send in a transaction of its own')),
    logger: () => slots[0].producer.logger(),
    missingTopics: (topics, opts) => catalog.missing(topics, opts),
    renew(reason: string) {
      log?.warn({ reason }, 'Kafka producer renewed (topics looked up again on new producers)');
      for (const slot of slots) slot.stale = true;
    },
    fenceScope,
    fenceOthers: (scope: string) => fenceScopeOf(kafka, scope),
  };
  return facade;
}

/**
 * What a failed commit's error says about its transaction (commitSettled). kafkajs's commit (eosManager.commit) finds
 * the transaction coordinator (cluster.findGroupCoordinator: FindCoordinator through its retrier) and sends one EndTxn.
 * It can end with:
 * - a KafkaJSProtocolError thrown as it is: the coordinator's answer to the EndTxn, by its `type` (see NOT_YET_ANSWERS
 *   for the ones that mean "ask again"); one found only wrapped in the errors below (the retrier keeps the error it gave
 *   up on as `cause`) is the coordinator lookup's, no answer;
 * - a request timeout, a connection error or closed connection (KafkaJSRequestTimeoutError, KafkaJSConnectionError,
 *   KafkaJSConnectionClosedError: kafkajs marks them retriable), thrown as they are by EndTxn;
 * - the same, tried by the retrier until its count ran out: KafkaJSNumberOfRetriesExceeded (not retriable; the error
 *   it gave up on as `cause`), e.g. a coordinator whose port refuses connections (ECONNREFUSED) for longer than the
 *   producer's retries;
 * - a coordinator it could not find: KafkaJSGroupCoordinatorNotFound (every broker failed its FindCoordinator),
 *   KafkaJSBrokerNotFound (a node missing from the metadata), KafkaJSLockTimeout (a broker's connect lock);
 * - an error of this side that no ask changes: the transaction already ended here ("Cannot continue to use
 *   transaction once ended"), a state machine refusal, a bug (TypeError).
 * The first is an answer unless it says "not yet"; the next three are no answer (the EndTxn may or may not have
 * reached the coordinator); the last is neither.
 */
export type CommitErrorKind = 'refused' | 'unanswered' | 'local';

/**
 * Protocol errors of a coordinator that has not settled the transaction yet: still writing an earlier ask's markers
 * (CONCURRENT_TRANSACTIONS), loading its log, or not (or no longer) the coordinator (kafkajs's names for
 * COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE and NOT_COORDINATOR are the GROUP_ ones), and the broker's
 * own "no answer" (a request it timed out, a network error on its side).
 */
const NOT_YET_ANSWERS = new Set([
  'CONCURRENT_TRANSACTIONS',
  'GROUP_LOAD_IN_PROGRESS',
  'GROUP_COORDINATOR_NOT_AVAILABLE',
  'NOT_COORDINATOR_FOR_GROUP',
  'COORDINATOR_LOAD_IN_PROGRESS',
  'COORDINATOR_NOT_AVAILABLE',
  'NOT_COORDINATOR',
  'REQUEST_TIMED_OUT',
  'NETWORK_EXCEPTION',
]);

/** kafkajs errors that carry no answer from the coordinator (see CommitErrorKind). */
const NO_ANSWER_ERRORS = new Set([
  'KafkaJSRequestTimeoutError',
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSNumberOfRetriesExceeded',
  'KafkaJSGroupCoordinatorNotFound',
  'KafkaJSBrokerNotFound',
  'KafkaJSNoBrokerAvailableError',
  'KafkaJSLockTimeout',
  'KafkaJSMetadataNotLoaded',
]);

/** Node's codes for a connection that failed or was lost. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/** The error and the errors it wraps (`cause`, kafkajs's retrier; `originalError`, older wrappers), outermost first. */
function errorChain(err: unknown): { name?: unknown; type?: unknown; code?: unknown; retriable?: unknown }[] {
  const chain: object[] = [];
  for (let e: unknown = err; typeof e === 'object' && e !== null && !chain.includes(e) && chain.length < 16;) {
    chain.push(e);
    const { cause, originalError } = e as { cause?: unknown; originalError?: unknown };
    e = cause ?? originalError;
  }
  return chain;
}

/**
 * See CommitErrorKind. The coordinator's answer to the EndTxn is a protocol error thrown as it is (kafkajs sends the
 * EndTxn once per ask, with no retrier around it). A protocol error only found wrapped (by a retrier: retries exceeded,
 * a bail) is the ask's coordinator lookup giving up (FindCoordinator, or the metadata refresh it makes when the
 * coordinator cannot be reached: LEADER_NOT_AVAILABLE of a target topic, attack43-reask-lookup-metadata-error): no
 * EndTxn was sent, so no answer. Else any sign of no answer; else local.
 */
export function commitErrorKind(err: unknown): CommitErrorKind {
  const chain = errorChain(err);
  const [thrown] = chain;
  if (typeof thrown?.type === 'string') return NOT_YET_ANSWERS.has(thrown.type) ? 'unanswered' : 'refused';
  const unanswered = chain.some(
    (e) =>
      typeof e.type === 'string' ||
      NO_ANSWER_ERRORS.has(e.name as string) ||
      (typeof e.code === 'string' && NETWORK_CODES.has(e.code)) ||
      e.retriable === true,
  );
  return unanswered ? 'unanswered' : 'local';
}

/**
 * Commits a transaction whose records were acknowledged, and settles what a commit without an answer leaves open. Its
 * EndTxn may have reached the coordinator before the request failed here (timed out at a frozen broker, a connection
 * lost), so the transaction may be committed; a fence then aborts nothing, and the caller's retry would publish the
 * page a second time. So the commit is asked again (the patched kafkajs keeps the transaction open after a failed
 * EndTxn) until the coordinator answers: success (committed, by this ask or an earlier one; the coordinator answers a
 * repeated commit of a committed transaction so) or a refusal (aborted: timed out, fenced). What is an answer is
 * commitErrorKind's: kafkajs wraps a lost coordinator in errors it does not mark retriable (retries exceeded, a
 * coordinator not found), which are no answer all the same. No answer within COMMIT_SETTLE_MS: the send fails as any
 * other, fenced (its retry may then publish the page again). A re-ask refused as fenced is not an answer about the
 * transaction (see isFencedRefusal's use below): `readBack` decides it (committedReadBack), unknown fails the send.
 */
export async function commitSettled(
  transaction: Pick<Transaction, 'commit'>,
  transactionalId: string,
  log?: Logger,
  {
    settleMs = COMMIT_SETTLE_MS,
    firstPauseMs = COMMIT_ASK_PAUSE_MS,
    readBack,
  }: {
    settleMs?: number;
    firstPauseMs?: number;
    /** Whether the transaction's records are read committed, once it is settled (committedReadBack); undefined: unknown. */
    readBack?: () => Promise<'committed' | 'aborted' | undefined>;
  } = {},
): Promise<void> {
  // Counted from the first ask's failure, not its start: an EndTxn that timed out took a request timeout (15 s) of it,
  // and a broker frozen that long answers only once it runs again (attack39: thawed at 20 s, it answered the re-ask
  // "concurrent transactions" while writing the first ask's markers, with no time left to ask once more).
  let deadline: number | undefined;
  for (let pause = firstPauseMs, asked = 1; ; pause = Math.min(pause * 2, FENCE_PAUSE_MAX_MS), asked++) {
    try {
      await transaction.commit();
      return;
    } catch (err) {
      // A fence (another party's InitProducerId for this id: an erasure's waiter fencing a cut-off holder) that reached
      // the coordinator after an earlier ask's EndTxn found the transaction committing: it waited for the commit, then
      // bumped the epoch, and this ask is refused as fenced although the transaction is committed. The first ask's
      // refusal is exact (the fence came first and aborted it); a re-ask's says nothing, so the records are read back.
      if (asked > 1 && readBack && isFencedRefusal(err)) {
        const found = await readBack().catch((readErr: unknown) => {
          log?.warn({ err: readErr, transactionalId }, 'Reading a fenced replay commit back failed');
          return undefined;
        });
        log?.warn(
          { err: (err as Error).message, transactionalId, found: found ?? 'unknown' },
          'A replay commit asked again was refused as fenced; read back',
        );
        if (found === 'committed') return;
        throw err;
      }
      // A refusal, an error of this side or no time left: the send failed. Else no answer, or a coordinator not
      // there yet or still writing the commit's markers (commitErrorKind): asked again.
      deadline ??= Date.now() + settleMs;
      if (commitErrorKind(err) !== 'unanswered' || Date.now() + pause >= deadline) throw err;
      log?.warn(
        { err: (err as Error).message, transactionalId },
        'Kafka did not answer a replay commit (it may have committed); asking again',
      );
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }
}

/** Whether err is the coordinator's refusal of an old epoch: the id fenced by a newer producer, or timed out. */
export function isFencedRefusal(err: unknown): boolean {
  return errorChain(err).some(
    (e) =>
      e.type === 'INVALID_PRODUCER_EPOCH' ||
      e.type === 'PRODUCER_FENCED' ||
      // kafkajs 2.2.4 does not know PRODUCER_FENCED (90; EndTxn v1, kafkajs's, gets INVALID_PRODUCER_EPOCH instead).
      (e.type === 'KAFKAJS_UNKNOWN_ERROR_CODE' && / 90$/.test(String((e as { message?: unknown }).message))),
  );
}

/** How long committedReadBack waits for its consumer to find the transaction's marker (a group joined, a fetch). */
export const READ_BACK_MS = 15_000;

/**
 * How long a send's commit is given, from its records' acknowledgement to its settling, when its attempt has an end
 * (withSendAttempt's settleBy): a first ask (one request timeout), asks again for COMMIT_SETTLE_MS, the ask under way
 * then (one request timeout) and a read back (READ_BACK_MS). A send with less than this left before its attempt's
 * end is not committed.
 */
export const COMMIT_PHASE_MS = 2 * KAFKA_REQUEST_TIMEOUT_MS + COMMIT_SETTLE_MS + READ_BACK_MS;

/**
 * How much of its lease a send waits for before it produces (AttemptLease.hold): a commit phase after the guard and the
 * produce's acknowledgement (PRODUCE_ACK_TIMEOUT_MS); with only a commit phase, a healthy page was aborted after its
 * acks for 0.2 s too little (test/unit/attack47-lease-at-margin-aborts-healthy-page.test.ts).
 */
export const SEND_LEASE_MS = COMMIT_PHASE_MS + PRODUCE_ACK_TIMEOUT_MS;

/**
 * How much committedReadBack fetches at once. Kafka returns whole record batches, and a page's batch on a partition is
 * up to its topic's max.message.bytes; the marker that follows it must come in the same fetch (a fetch of control
 * records only reaches no eachBatch in kafkajs, attack44-read-back-marker-past-fetch: kafkajs's default, 1 MiB, never
 * found the marker of a bigger batch). Topics allowing larger batches than this: unknown, as documented.
 */
export const READ_BACK_FETCH_BYTES = 16 * 1024 * 1024;
/** How soon committedReadBack fetches from the record again when a fetch held it but not its marker. */
const READ_BACK_AGAIN_MS = 200;

/** A fetched record as kafkajs 2.2.4 decodes it (Batch's rawMessages), with what the read-back needs of its batch. */
interface FetchedRecord {
  offset: string;
  key: Buffer | null;
  isControlRecord?: boolean;
  batchContext?: { producerId?: string };
}

/**
 * Whether a transaction whose commit is unknown (its re-ask refused by a fence: commitSettled) is committed, read from
 * Kafka: the send's first acknowledged record (topic, partition, baseOffset) is fetched, read uncommitted, by a
 * consumer of a group of its own (no offsets committed); the record's batch names its producer id, and the first
 * control record of that producer id after it is the transaction's marker (one producer id runs one transaction at a
 * time, each ended by its marker before the next begins): its key's type says commit or abort. kafkajs's own aborted
 * filter is not used: it is right only for a consumer that walked the partition from before every aborted
 * transaction the fetch lists, and one seeking to the record would take another producer's abort for its own
 * (attack43-read-back-interleaved-abort). A fetch holding the record but not its marker (not written yet, or in a
 * later fetch of control records only, which kafkajs gives to no eachBatch) is made again from the record. Unknown
 * (undefined) if no marker is found within timeoutMs, or there is no offset to read (a send without records).
 */
export async function committedReadBack(
  kafka: Kafka,
  acknowledged: RecordMetadata[],
  groupPrefix: string,
  log?: Logger,
  { timeoutMs = READ_BACK_MS, disconnectTimeoutMs = PRODUCER_DISCONNECT_TIMEOUT_MS } = {},
): Promise<'committed' | 'aborted' | undefined> {
  const record = acknowledged.find((m) => m.baseOffset !== undefined && m.errorCode === 0);
  if (!record?.baseOffset) return undefined;
  const { topicName: topic, partition } = record;
  const baseOffset = record.baseOffset;
  const offset = BigInt(baseOffset);
  let settle!: (found: 'committed' | 'aborted' | undefined) => void;
  const found = new Promise<'committed' | 'aborted' | undefined>((resolve) => (settle = resolve));
  const timer = setTimeout(() => settle(undefined), timeoutMs);
  let producerId: string | undefined;
  let again: NodeJS.Timeout | undefined;
  let done = false;
  const consumer = kafka.consumer({
    groupId: `${groupPrefix}:${randomUUID()}`,
    readUncommitted: true,
    maxBytesPerPartition: READ_BACK_FETCH_BYTES,
    maxBytes: READ_BACK_FETCH_BYTES,
  });
  let running: Promise<void> | undefined;
  try {
    await Promise.race([
      found,
      (async () => {
        await consumer.connect();
        // Given up meanwhile (its time ran out): nothing more started.
        if (done) return;
        await consumer.subscribe({ topics: [topic] });
        if (done) return;
        running = consumer.run({
          autoCommit: false,
          eachBatch: async ({ batch }) => {
            if (batch.topic !== topic || batch.partition !== partition || done) return;
            const fetched = (batch as unknown as { rawMessages?: FetchedRecord[] }).rawMessages ?? [];
            producerId ??= fetched.find((m) => !m.isControlRecord && BigInt(m.offset) === offset)?.batchContext
              ?.producerId;
            if (producerId === undefined) return;
            const marker = fetched.find(
              (m) => m.isControlRecord && BigInt(m.offset) > offset && m.batchContext?.producerId === producerId,
            );
            // A control record's key: int16 version, int16 type (0 abort, 1 commit).
            if (marker?.key && marker.key.length >= 4)
              return settle(marker.key.readInt16BE(2) === 1 ? 'committed' : 'aborted');
            clearTimeout(again);
            again = setTimeout(
              () => !done && consumer.seek({ topic, partition, offset: baseOffset }),
              READ_BACK_AGAIN_MS,
            );
          },
        });
        await running;
        consumer.seek({ topic, partition, offset: baseOffset });
      })(),
    ]);
    return await found;
  } finally {
    done = true;
    clearTimeout(timer);
    clearTimeout(again);
    settle(undefined);
    // A consumer still joining its group when disconnected would go on running after it (kafkajs's runner stops only
    // once started; attack43-read-back-consumer-outlives-disconnect): its join is waited for, within a bound.
    if (running)
      await closeWithin(
        running.catch(() => undefined),
        timeoutMs,
        log,
        'A replay read-back consumer',
        { verb: 'join' },
      );
    await disconnectWithin(consumer.disconnect(), disconnectTimeoutMs, log, 'A replay read-back consumer');
  }
}

/**
 * Connects a transactional kafkajs producer and takes its transactional id's epoch now. kafkajs's connect() alone
 * does not: it asks for a producer id without the transactional id, and the id's InitProducerId (which bumps the
 * epoch and aborts the id's open transaction) waits for the first transaction(). So a fence that only connected
 * fenced nothing (checked against the broker: a transaction opened before such a "fence" still committed), and a
 * slot's epoch was taken after its send's guard. An empty transaction begun and aborted takes it (no EndTxn is sent).
 */
async function connectTransactional(producer: Producer): Promise<void> {
  await producer.connect();
  const transaction = await producer.transaction();
  await transaction.abort();
}

/**
 * Fences every transactional id of another replay producer (its `fenceScope`; its process gone, or cut off for a
 * lease): each id's open transaction aborted and its epoch bumped, so that nothing it sent before is appended visibly
 * from now on. Resolves once every one has answered.
 */
async function fenceScopeOf(kafka: Kafka, scope: string): Promise<void> {
  await Promise.all(
    Array.from({ length: REPLAY_PRODUCER_SLOTS }, async (_, i) => {
      const producer = kafka.producer({ transactionalId: `${scope}:${i}`, idempotent: true, maxInFlightRequests: 1 });
      try {
        await connectTransactional(producer);
      } finally {
        await producer.disconnect().catch(() => undefined);
      }
    }),
  );
}

/** The fencing of a replay producer (createProducer's), or undefined for another producer (a test's fake). */
export function replayFencing(producer: Producer): Pick<ReplayProducer, 'fenceScope' | 'fenceOthers'> | undefined {
  const candidate = producer as Partial<ReplayProducer>;
  return typeof candidate.fenceScope === 'string' && typeof candidate.fenceOthers === 'function'
    ? { fenceScope: candidate.fenceScope, fenceOthers: (scope) => candidate.fenceOthers!(scope) }
    : undefined;
}

const sendGuards = new AsyncLocalStorage<() => Promise<void>>();
const sendAttempts = new AsyncLocalStorage<SendAttempt>();

/** What a replay-producer send knows of the activity attempt it is made for (withSendAttempt). */
export interface SendAttempt {
  /** Aborts when the attempt ends (cancelled, timed out). */
  signal?: AbortSignal;
  /**
   * performance.now() by which the send must have settled: before the attempt's end as its retry policy sees it, so
   * that no commit lands after its retry may have sent the page again.
   */
  settleBy?: number;
  /**
   * Heartbeats the attempt's last details again (an activity with a heartbeat timeout), every keepAliveMs while a
   * page's send is under way (keepingAttemptAlive): the server then ends a live attempt only at settleBy's end.
   */
  keepAlive?: () => void;
  keepAliveMs?: number;
  /** What the server has confirmed of the attempt's life (an activity with a heartbeat timeout; worker/attempt-lease.ts). */
  lease?: AttemptLease;
}

/**
 * An attempt's lease: the time before which the Temporal server has confirmed it does not end the attempt. A heartbeat
 * the server recorded resets its heartbeat timer from the moment it arrived, which is after the heartbeat was made; so
 * the attempt lives at least until its last recorded heartbeat's making plus its heartbeat timeout (less a margin),
 * measured on this side's clock alone. Heartbeats that do not reach the server (a worker cut off from Temporal) grow
 * nothing, however often they are made.
 */
export interface AttemptLease {
  /** performance.now() before which the server does not end the attempt for want of heartbeats (confirmed). */
  until(): number;
  /**
   * Resolves once at least `ms` of the lease is left, heartbeating and asking the server meanwhile; rejects once the
   * server is known to have ended the attempt, or `signal` aborts.
   */
  hold(ms: number, signal?: AbortSignal): Promise<void>;
}

/**
 * Runs fn with every replay-producer send it makes bound to `attempt` (merged over an attempt fn is already under; a
 * signal of each binds it):
 * - its `signal`: a send still waiting for a slot of the producer (all busy, or fenced again and again while Kafka is
 *   away) when the attempt ends leaves the queue, and one whose attempt ended before it produced anything produces
 *   nothing;
 * - its `settleBy`: a send with less than COMMIT_PHASE_MS left produces nothing, one acknowledged with less than that
 *   left is aborted (fenced) rather than committed, and a commit still unsettled at `settleBy` fails the send (fenced,
 *   as any failed send). Either way the send rejects and the attempt's retry sends the page again;
 * - its `lease`: the same with the lease's end where it comes first, and a send first waits until the server has
 *   confirmed a commit phase of its attempt's life (AttemptLease.hold).
 */
export function withSendAttempt<T>(attempt: SendAttempt, fn: () => Promise<T>): Promise<T> {
  const outer = sendAttempts.getStore();
  // Both signals bind the send: the outer one may be the lease's (the server ended the attempt), which the caller's
  // own cancellation signal does not carry.
  const signal =
    outer?.signal && attempt.signal ? eitherSignal(outer.signal, attempt.signal) : (attempt.signal ?? outer?.signal);
  return sendAttempts.run({ ...outer, ...definedOf(attempt), signal }, fn);
}

function definedOf(attempt: SendAttempt): SendAttempt {
  return Object.fromEntries(Object.entries(attempt).filter(([, value]) => value !== undefined));
}

/**
 * Runs a page's send (its wait for a barrier slot, for an earlier attempt's send, the send and its commit) keeping its
 * attempt alive: every keepAliveMs its keepAlive, until fn ends or the attempt's signal aborts. Without it a page
 * activity (heartbeat timeout 30 s) waiting there heartbeated nothing, was timed out without hearing of it (a timeout
 * reaches an activity only in a heartbeat's answer) and sent the page beside its retries (attack45). Elsewhere the
 * heartbeat timeout keeps finding a stuck attempt.
 */
export async function keepingAttemptAlive<T>(fn: () => Promise<T>): Promise<T> {
  const { keepAlive, keepAliveMs, signal } = sendAttempts.getStore() ?? {};
  if (!keepAlive || !keepAliveMs) return fn();
  const keeping = setInterval(() => signal?.aborted || keepAlive(), keepAliveMs);
  try {
    return await fn();
  } finally {
    clearInterval(keeping);
  }
}

/** The signal of the attempt the caller's sends are bound to (withSendAttempt), if any. */
export function sendAttemptSignal(): AbortSignal | undefined {
  return sendAttempts.getStore()?.signal;
}

/** withSendAttempt with the attempt's signal only (its settleBy, if any, from the attempt fn is already under). */
export function withSendSignal<T>(signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
  return signal ? withSendAttempt({ signal }, fn) : fn();
}

/**
 * Runs fn with every replay-producer send it makes, on any createProducer producer and through any wrapper of one,
 * first asking `guard` once the send's transactional epoch is fixed and before it produces anything: a rejection
 * fails the send with nothing sent. A barrier holder's check that it still holds (repository/erasure.ts
 * withErasuresChecked): carried by the call, so no send under the barrier can leave it out.
 */
export function withSendGuard<T>(guard: () => Promise<void>, fn: () => Promise<T>): Promise<T> {
  return sendGuards.run(guard, fn);
}
