import path from 'node:path';
import { ConfigError } from './errors';
import { readTlsPair, type ApiTls } from './tls';
import { MAX_REPLAY_SHARDS, NOTIFICATION_KINDS, type NotificationKind } from '../journal/kinds';

/** Every setting the service reads, validated once at start and passed down explicitly. */
export interface Config {
  databaseUrl: string;
  databasePoolSize: number;
  /** Longest any one SQL statement may run (lock waits included) before Postgres cancels it. */
  databaseStatementTimeoutMs: number;
  /** Longest a graceful stop may take; past it the process exits non-zero, naming what was still open. */
  shutdownTimeoutMs: number;
  kafka: {
    brokers: string[];
    clientId: string;
    groupId: string;
    topics: string[];
    topicPartitions: number;
    /** Replicas of each topic the service creates (3 in the cluster profile; 1 on a single broker). */
    topicReplicationFactor: number;
    fromBeginning: boolean;
    sessionTimeoutMs: number;
  };
  ingest: {
    maxEventBytes: number;
    retryMaxDelayMs: number;
    perEventLogLimit: number;
    concurrency: number;
    fetchBytesPerPartition: number;
    /** How often the lag monitor reads committed offsets and high watermarks. */
    lagIntervalMs: number;
    /** A partition with lag whose committed offset has not moved for this long is stalled. */
    stallSeconds: number;
    /**
     * A partition of this process stalled for this long (or, owning none, any partition of the group) makes the
     * watchdog restart its Kafka consumer (ingest/watchdog.ts); 0 disables it.
     */
    watchdogSeconds: number;
  };
  metrics: { host: string; port: number; tenantLabelLimit: number };
  api: {
    host: string;
    port: number;
    bodyLimitBytes: number;
    replayWaitMs: number;
    replayRateLimitPerMinute: number;
    /** How long an Idempotency-Key is remembered (shared by all instances in Postgres, pruned after). */
    idempotencyKeyTtlSeconds: number;
    /** Connections of the API's own pool (reads, stream catch-up): API load cannot take ingest's connections. */
    databasePoolSize: number;
    jwtSecret: string | undefined;
    /** HS256 keys by kid (AUTH_JWT_SECRETS): several at once, so a key rotates without downtime. */
    jwtSecrets: Record<string, string>;
    /** An OIDC provider's JWKS (RS256/ES256 tokens). */
    jwksUrl: string | undefined;
    /** Required token issuer (iss) and audience (aud), when set. */
    issuer: string | undefined;
    audience: string | undefined;
    authMode: 'jwt' | 'none';
    openOnPurpose: boolean;
    /** Exact origins (scheme://host[:port]) whose pages may call the API cross-origin; empty = CORS off. */
    corsOrigins: string[];
    /** Host names requests must be addressed to (API_ALLOWED_HOSTS; api/app.ts has the default). */
    allowedHosts: string[];
    /** HTTPS with HTTP/2 (ALPN, HTTP/1.1 fallback) from this certificate; undefined = plain HTTP/1.1. */
    tls: ApiTls | undefined;
  };
  temporal: {
    address: string;
    namespace: string;
    taskQueue: string;
    uiUrl: string;
  };
  stream: {
    maxClients: number;
    clientBuffer: number;
    /** Most bytes held for one client that does not keep up (queued frames; one catch-up page's payloads). */
    clientBufferBytes: number;

    heartbeatMs: number;
    /** Most events a resuming client is sent from the journal; beyond it a backlog_truncated frame, then live. */
    maxBacklog: number;
    /** Journal rows per second all catch-ups of this process may send together (0: no budget). */
    catchUpRowsPerSecond: number;
  };
  replay: {
    maxHops: number;
    pageSize: number;
    /** Topics a replay may publish to (REPLAY_TARGET_TOPICS; default: the ingested KAFKA_TOPICS). */
    targetTopics: string[];
    /** A range replay of at least this many events is split into child workflows (REPLAY_SHARD_THRESHOLD). */
    shardThreshold: number;
    /** Children of a split range replay (REPLAY_SHARDS; 1: never split). */
    shards: number;
  };
  dlqRetry: {
    scheduleId: string;
    intervalMs: number;
    maxAttempts: number;
    baseDelayMs: number;
    batchSize: number;
  };
  journal: {
    /** Length of each time partition of event_journal. */
    partitionInterval: PartitionInterval;
    /** Partitions kept created ahead of now (maintenance creates them; the default partition catches the rest). */
    partitionsAhead: number;
    /** Retention in days by topic ("*": every other topic); absent = kept forever. PUT /retention overrides it. */
    retentionDays: Record<string, number>;
    maintenanceScheduleId: string;
    maintenanceIntervalMs: number;
    /**
     * How long Kafka may still deliver a record again after this service received it (KAFKA_REDELIVERY_HORIZON: the
     * ingested topics' retention.ms plus segment.ms; "forever" for compacted topics or retention -1). Rows removed
     * within it are remembered in removed_records; null = for ever.
     */
    redeliveryHorizonMs: number | null;
  };
  /** Secret that signs replay lineage (x-replay-proof); when unset, the one migration 007 generated in Postgres. */
  lineageKey: string | undefined;
  logLevel: string;
  archive: ArchiveConfig;
  erasure: {
    /** Payload fields an erasure by data subject may name (ERASURE_SUBJECT_FIELDS). */
    subjectFields: string[];
  };
  notifications: NotificationsConfig;
}

/** Operational webhooks (docs/notifications.md). */
export interface NotificationsConfig {
  /** URLs per kind from NOTIFY_WEBHOOKS; PUT /notifications overrides a kind. */
  urls: Record<NotificationKind, string[]>;
  /** HMAC-SHA256 key of the signature header (NOTIFY_SIGNING_SECRET); undefined: nothing is sent. */
  signingSecret: string | undefined;
  /** Attempts per delivery, the first included; then it is abandoned. */
  maxAttempts: number;
  /** Wait before the second attempt; doubles per attempt, up to an hour. */
  backoffMs: number;
  /** Longest one POST may take. */
  timeoutMs: number;
  /** dlq_group_growing: at least `threshold` dead letters of one reason and topic received within `windowMs`. */
  dlqGrowth: { threshold: number; windowMs: number; intervalMs: number };
}

/** Where archived journal segments go (archive/create-store.ts picks the store from it). */
export interface ArchiveConfig {
  store: 'local' | 's3';
  /** The local store's directory (relative: to the working directory). */
  dir: string;
  /** Set when store is s3. */
  s3: ArchiveS3Config | undefined;
}

/** An S3 bucket, on AWS or on any S3-compatible server (path-style addressing). */
export interface ArchiveS3Config {
  /** http(s) URL of an S3-compatible server; undefined = AWS S3 itself for the region. */
  endpoint: string | undefined;
  bucket: string;
  region: string;
  /** Both set, or both undefined for the AWS SDK's default credential chain (environment, profile, instance role). */
  accessKeyId: string | undefined;
  secretAccessKey: string | undefined;
}

type Env = Record<string, string | undefined>;

/** Defaults, also listed in .env.example (a test keeps the two in step). */
export const DEFAULTS = {
  DATABASE_URL: 'postgres://crm_events:crm_events@127.0.0.1:5446/crm_events',
  DATABASE_POOL_SIZE: '10',
  DATABASE_STATEMENT_TIMEOUT: '30s',
  SHUTDOWN_TIMEOUT: '30s',
  KAFKA_BROKERS: '127.0.0.1:9092',
  KAFKA_CLIENT_ID: 'crm-events-sink',
  KAFKA_GROUP_ID: 'crm-events-sink',
  KAFKA_TOPICS: 'apexflow.leads.created,apexflow.jobs.created',
  KAFKA_TOPIC_PARTITIONS: '3',
  KAFKA_TOPIC_REPLICATION_FACTOR: '1',
  KAFKA_FROM_BEGINNING: 'true',
  KAFKA_SESSION_TIMEOUT_MS: '30000',
  INGEST_MAX_EVENT_BYTES: '1048576',
  INGEST_RETRY_MAX_DELAY_MS: '10000',
  INGEST_PER_EVENT_LOG_LIMIT: '10',
  INGEST_CONCURRENCY: '3',
  INGEST_FETCH_BYTES_PER_PARTITION: '1048576',
  INGEST_LAG_INTERVAL_MS: '5000',
  INGEST_STALL_SECONDS: '60',
  INGEST_WATCHDOG_SECONDS: '120',
  METRICS_HOST: '127.0.0.1',
  METRICS_PORT: '9105',
  METRICS_TENANT_LABEL_LIMIT: '100',
  API_HOST: '127.0.0.1',
  API_PORT: '9106',
  API_BODY_LIMIT_BYTES: '1048576',
  API_REPLAY_WAIT_MS: '5000',
  API_REPLAY_RATE_LIMIT_PER_MINUTE: '10',
  API_IDEMPOTENCY_KEY_TTL_SECONDS: '86400',
  API_DATABASE_POOL_SIZE: '4',
  AUTH_JWT_SECRET: '',
  AUTH_MODE: '',
  AUTH_JWT_SECRETS: '',
  AUTH_JWKS_URL: '',
  AUTH_ISSUER: '',
  AUTH_AUDIENCE: '',
  API_CORS_ORIGINS: '',
  API_ALLOWED_HOSTS: '',
  API_TLS_CERT: '',
  API_TLS_KEY: '',
  API_TLS: '',
  API_TLS_DIR: '.stack/tls',
  STREAM_MAX_CLIENTS: '100',
  STREAM_CLIENT_BUFFER: '1000',
  STREAM_CLIENT_BUFFER_BYTES: '8388608',
  STREAM_HEARTBEAT_MS: '15000',
  STREAM_MAX_BACKLOG: '10000',
  STREAM_CATCHUP_ROWS_PER_SECOND: '5000',
  TEMPORAL_ADDRESS: '127.0.0.1:7233',
  TEMPORAL_NAMESPACE: 'default',
  TEMPORAL_TASK_QUEUE: 'crm-events-replay',
  TEMPORAL_UI_URL: 'http://127.0.0.1:8233',
  REPLAY_MAX_HOPS: '3',
  REPLAY_PAGE_SIZE: '500',
  REPLAY_TARGET_TOPICS: '',
  REPLAY_SHARD_THRESHOLD: '100000',
  REPLAY_SHARDS: '4',
  DLQ_RETRY_SCHEDULE_ID: 'crm-events-dlq-retry',
  DLQ_RETRY_INTERVAL: '5m',
  DLQ_RETRY_MAX_ATTEMPTS: '5',
  DLQ_RETRY_BASE_DELAY: '1m',
  DLQ_RETRY_BATCH_SIZE: '100',
  JOURNAL_PARTITION_INTERVAL: 'month',
  JOURNAL_PARTITIONS_AHEAD: '3',
  JOURNAL_RETENTION: '',
  MAINTENANCE_SCHEDULE_ID: 'crm-events-journal-maintenance',
  MAINTENANCE_INTERVAL: '1h',
  KAFKA_REDELIVERY_HORIZON: '15d',
  LINEAGE_KEY: '',
  LOG_LEVEL: 'info',
  ARCHIVE_STORE: 'local',
  ARCHIVE_DIR: '.stack/archive',
  ARCHIVE_S3_ENDPOINT: '',
  ARCHIVE_S3_BUCKET: '',
  ARCHIVE_S3_REGION: 'us-east-1',
  ARCHIVE_S3_ACCESS_KEY_ID: '',
  ARCHIVE_S3_SECRET_ACCESS_KEY: '',
  ERASURE_SUBJECT_FIELDS: 'email,phone,lead_id',
  NOTIFY_WEBHOOKS: '',
  NOTIFY_SIGNING_SECRET: '',
  NOTIFY_MAX_ATTEMPTS: '8',
  NOTIFY_BACKOFF: '10s',
  NOTIFY_TIMEOUT: '10s',
  NOTIFY_DLQ_GROWTH_THRESHOLD: '100',
  NOTIFY_DLQ_GROWTH_WINDOW: '15m',
  NOTIFY_DLQ_GROWTH_INTERVAL: '1m',
} as const;

export type ConfigVariable = keyof typeof DEFAULTS;

/** How long each of the journal's time partitions is (JOURNAL_PARTITION_INTERVAL). */
export const PARTITION_INTERVALS = ['month', 'day'] as const;
export type PartitionInterval = (typeof PARTITION_INTERVALS)[number];

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Reads and validates the environment; throws ConfigError naming the first bad variable. */
export function loadConfig(env: Env = process.env): Config {
  const read = (name: ConfigVariable): string => {
    const value = env[name];
    return value === undefined || value.trim() === '' ? DEFAULTS[name] : value.trim();
  };
  const int = (name: ConfigVariable, min: number, max = Number.MAX_SAFE_INTEGER): number => {
    const raw = read(name);
    if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
    const value = Number(raw);
    if (value < min || value > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${value}`);
    return value;
  };
  const bool = (name: ConfigVariable): boolean => {
    const raw = read(name).toLowerCase();
    if (['true', '1', 'yes'].includes(raw)) return true;
    if (['false', '0', 'no'].includes(raw)) return false;
    throw new ConfigError(name, `must be true or false, got "${raw}"`);
  };
  const list = (name: ConfigVariable): string[] => {
    const items = read(name)
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    if (items.length === 0) throw new ConfigError(name, 'must list at least one value');
    return items;
  };
  const duration = (name: ConfigVariable): number => {
    const raw = read(name);
    const ms = parseDuration(raw);
    if (ms === undefined || ms <= 0) throw new ConfigError(name, `must be a duration like 30s, 5m or 1h, got "${raw}"`);
    return ms;
  };
  const url = (name: ConfigVariable, protocols: string[]): string => {
    const raw = read(name);
    let parsed: URL;
    try {
      parsed = new URL(raw);
    } catch {
      throw new ConfigError(name, `must be a URL, got "${raw}"`);
    }
    if (!protocols.includes(parsed.protocol)) {
      throw new ConfigError(name, `must use ${protocols.join(' or ')}, got "${parsed.protocol}"`);
    }
    return raw;
  };
  const origins = (name: ConfigVariable): string[] => {
    const items = read(name)
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    for (const item of items) {
      // Browsers send Origin as scheme://host[:port] exactly; anything else (a path, a wildcard) would never match.
      let origin: string | undefined;
      try {
        origin = new URL(item).origin;
      } catch {
        origin = undefined;
      }
      if (origin !== item || !/^https?:$/.test(new URL(item).protocol)) {
        throw new ConfigError(name, `has "${item}", expected an exact origin like https://ops.example.com`);
      }
    }
    return items;
  };
  const oneOf = <T extends string>(name: ConfigVariable, allowed: readonly T[]): T => {
    const raw = read(name);
    if (!(allowed as readonly string[]).includes(raw)) {
      throw new ConfigError(name, `must be one of ${allowed.join(', ')}, got "${raw}"`);
    }
    return raw as T;
  };
  const hostPort = (name: ConfigVariable): string => {
    const raw = read(name);
    if (!/^[\w.-]+:\d{1,5}$/.test(raw)) throw new ConfigError(name, `must be host:port, got "${raw}"`);
    return raw;
  };

  const brokers = list('KAFKA_BROKERS');
  for (const broker of brokers) {
    if (!/^[\w.-]+:\d{1,5}$/.test(broker))
      throw new ConfigError('KAFKA_BROKERS', `has "${broker}", expected host:port`);
  }
  const logLevel = read('LOG_LEVEL');
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError('LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}`);
  const lineageKey = read('LINEAGE_KEY');
  if (lineageKey && lineageKey.length < 32) throw new ConfigError('LINEAGE_KEY', 'must be at least 32 characters');
  const secret = read('AUTH_JWT_SECRET');
  if (secret && secret.length < 16) throw new ConfigError('AUTH_JWT_SECRET', 'must be at least 16 characters');
  const secrets = keyRing(read('AUTH_JWT_SECRETS'));
  const jwksUrl = read('AUTH_JWKS_URL') ? url('AUTH_JWKS_URL', ['http:', 'https:']) : '';
  // Without an audience, a token the provider issued for any other application would be accepted here.
  if (jwksUrl && !read('AUTH_AUDIENCE')) throw new ConfigError('AUTH_AUDIENCE', 'must be set with AUTH_JWKS_URL');
  if (jwksUrl && !read('AUTH_ISSUER')) throw new ConfigError('AUTH_ISSUER', 'must be set with AUTH_JWKS_URL');
  const keySources = [
    secret && 'AUTH_JWT_SECRET',
    Object.keys(secrets).length > 0 && 'AUTH_JWT_SECRETS',
    jwksUrl && 'AUTH_JWKS_URL',
  ].filter((name): name is string => Boolean(name));
  const authOn = keySources.length > 0;
  const authMode = read('AUTH_MODE');
  if (authMode !== '' && authMode !== 'none' && authMode !== 'jwt') {
    throw new ConfigError(
      'AUTH_MODE',
      `must be jwt, none or empty (jwt when AUTH_JWT_SECRET is set), got "${authMode}"`,
    );
  }
  if (authMode === 'jwt' && !authOn) {
    throw new ConfigError('AUTH_JWT_SECRET', 'must be set when AUTH_MODE=jwt (or AUTH_JWT_SECRETS or AUTH_JWKS_URL)');
  }
  if (authMode === 'none' && authOn) {
    throw new ConfigError('AUTH_MODE', `is none but ${keySources.join(' and ')} is set: choose one`);
  }
  // Secure by default: without auth, nothing listens beyond this host unless AUTH_MODE=none says so on purpose.
  if (!authOn && authMode !== 'none') {
    for (const name of ['API_HOST', 'METRICS_HOST'] as const) {
      if (!isLoopback(read(name))) {
        throw new ConfigError(
          name,
          `is "${read(name)}", reachable from other hosts, and auth is off: set AUTH_JWT_SECRET, bind ${name}=127.0.0.1, ` +
            'or set AUTH_MODE=none to expose an unauthenticated API on purpose',
        );
      }
    }
  }

  return {
    databaseUrl: url('DATABASE_URL', ['postgres:', 'postgresql:']),
    databasePoolSize: int('DATABASE_POOL_SIZE', 1, 200),
    databaseStatementTimeoutMs: duration('DATABASE_STATEMENT_TIMEOUT'),
    shutdownTimeoutMs: duration('SHUTDOWN_TIMEOUT'),
    kafka: {
      brokers,
      clientId: read('KAFKA_CLIENT_ID'),
      groupId: read('KAFKA_GROUP_ID'),
      topics: list('KAFKA_TOPICS'),
      topicPartitions: int('KAFKA_TOPIC_PARTITIONS', 1, 1000),
      topicReplicationFactor: int('KAFKA_TOPIC_REPLICATION_FACTOR', 1, 32),
      fromBeginning: bool('KAFKA_FROM_BEGINNING'),
      sessionTimeoutMs: int('KAFKA_SESSION_TIMEOUT_MS', 6000, 300_000),
    },
    ingest: {
      maxEventBytes: int('INGEST_MAX_EVENT_BYTES', 64, 100 * 1024 * 1024),
      retryMaxDelayMs: int('INGEST_RETRY_MAX_DELAY_MS', 100, 600_000),
      perEventLogLimit: int('INGEST_PER_EVENT_LOG_LIMIT', 0, 10_000),
      concurrency: int('INGEST_CONCURRENCY', 1, 100),
      fetchBytesPerPartition: int('INGEST_FETCH_BYTES_PER_PARTITION', 1024, 100 * 1024 * 1024),
      lagIntervalMs: int('INGEST_LAG_INTERVAL_MS', 100, 600_000),
      stallSeconds: int('INGEST_STALL_SECONDS', 1, 86_400),
      watchdogSeconds: int('INGEST_WATCHDOG_SECONDS', 0, 86_400),
    },
    metrics: {
      host: read('METRICS_HOST'),
      port: int('METRICS_PORT', 0, 65535),
      tenantLabelLimit: int('METRICS_TENANT_LABEL_LIMIT', 1, 100_000),
    },
    api: {
      host: read('API_HOST'),
      port: int('API_PORT', 0, 65535),
      bodyLimitBytes: int('API_BODY_LIMIT_BYTES', 1024, 100 * 1024 * 1024),
      replayWaitMs: int('API_REPLAY_WAIT_MS', 0, 600_000),
      replayRateLimitPerMinute: int('API_REPLAY_RATE_LIMIT_PER_MINUTE', 1, 1_000_000),
      idempotencyKeyTtlSeconds: int('API_IDEMPOTENCY_KEY_TTL_SECONDS', 60, 30 * 86_400),
      databasePoolSize: int('API_DATABASE_POOL_SIZE', 1, 100),
      jwtSecret: secret || undefined,
      jwtSecrets: secrets,
      jwksUrl: jwksUrl || undefined,
      issuer: read('AUTH_ISSUER') || undefined,
      audience: read('AUTH_AUDIENCE') || undefined,
      authMode: authOn ? 'jwt' : 'none',
      /** AUTH_MODE=none given explicitly: an unauthenticated API on purpose (logged at start). */
      openOnPurpose: authMode === 'none',
      corsOrigins: origins('API_CORS_ORIGINS'),
      allowedHosts: read('API_ALLOWED_HOSTS')
        .split(',')
        .map((h) => h.trim().toLowerCase())
        .filter(Boolean),
      tls: apiTls(read),
    },
    temporal: {
      address: hostPort('TEMPORAL_ADDRESS'),
      namespace: read('TEMPORAL_NAMESPACE'),
      taskQueue: read('TEMPORAL_TASK_QUEUE'),
      uiUrl: url('TEMPORAL_UI_URL', ['http:', 'https:']),
    },
    stream: {
      maxClients: int('STREAM_MAX_CLIENTS', 1, 100_000),
      clientBuffer: int('STREAM_CLIENT_BUFFER', 1, 1_000_000),
      clientBufferBytes: int('STREAM_CLIENT_BUFFER_BYTES', 65_536, 1024 * 1024 * 1024),
      heartbeatMs: int('STREAM_HEARTBEAT_MS', 100, 3_600_000),
      maxBacklog: int('STREAM_MAX_BACKLOG', 1, 10_000_000),
      catchUpRowsPerSecond: int('STREAM_CATCHUP_ROWS_PER_SECOND', 0, 10_000_000),
    },
    replay: {
      maxHops: int('REPLAY_MAX_HOPS', 1, 100),
      pageSize: int('REPLAY_PAGE_SIZE', 1, 10_000),
      targetTopics: read('REPLAY_TARGET_TOPICS') ? list('REPLAY_TARGET_TOPICS') : list('KAFKA_TOPICS'),
      shardThreshold: int('REPLAY_SHARD_THRESHOLD', 1),
      shards: int('REPLAY_SHARDS', 1, MAX_REPLAY_SHARDS),
    },
    dlqRetry: {
      scheduleId: read('DLQ_RETRY_SCHEDULE_ID'),
      intervalMs: duration('DLQ_RETRY_INTERVAL'),
      maxAttempts: int('DLQ_RETRY_MAX_ATTEMPTS', 1, 1000),
      baseDelayMs: duration('DLQ_RETRY_BASE_DELAY'),
      batchSize: int('DLQ_RETRY_BATCH_SIZE', 1, 10_000),
    },
    journal: {
      partitionInterval: oneOf('JOURNAL_PARTITION_INTERVAL', PARTITION_INTERVALS),
      partitionsAhead: int('JOURNAL_PARTITIONS_AHEAD', 1, 400),
      retentionDays: retention(read('JOURNAL_RETENTION')),
      maintenanceScheduleId: read('MAINTENANCE_SCHEDULE_ID'),
      maintenanceIntervalMs: duration('MAINTENANCE_INTERVAL'),
      redeliveryHorizonMs:
        read('KAFKA_REDELIVERY_HORIZON').trim() === 'forever' ? null : duration('KAFKA_REDELIVERY_HORIZON'),
    },
    lineageKey: lineageKey || undefined,
    logLevel,
    archive: archiveConfig(read, url),
    erasure: { subjectFields: list('ERASURE_SUBJECT_FIELDS') },
    notifications: notificationsConfig(read, int, duration),
  };
}

function notificationsConfig(
  read: (name: ConfigVariable) => string,
  int: (name: ConfigVariable, min: number, max?: number) => number,
  duration: (name: ConfigVariable) => number,
): NotificationsConfig {
  const urls = webhookUrls(read('NOTIFY_WEBHOOKS'));
  const secret = read('NOTIFY_SIGNING_SECRET');
  if (secret && secret.length < 16) {
    throw new ConfigError('NOTIFY_SIGNING_SECRET', 'must be at least 16 characters');
  }
  if (!secret && Object.values(urls).some((list) => list.length > 0)) {
    throw new ConfigError(
      'NOTIFY_SIGNING_SECRET',
      'must be set when NOTIFY_WEBHOOKS lists a URL (receivers verify it)',
    );
  }
  const timeoutMs = duration('NOTIFY_TIMEOUT');
  // The delivery activity's start-to-close timeout is a minute (workflows/notification-delivery.ts).
  if (timeoutMs > 50_000)
    throw new ConfigError('NOTIFY_TIMEOUT', `must be at most 50s, got "${read('NOTIFY_TIMEOUT')}"`);
  return {
    urls,
    signingSecret: secret || undefined,
    maxAttempts: int('NOTIFY_MAX_ATTEMPTS', 1, 50),
    backoffMs: duration('NOTIFY_BACKOFF'),
    timeoutMs,
    dlqGrowth: {
      threshold: int('NOTIFY_DLQ_GROWTH_THRESHOLD', 1),
      windowMs: duration('NOTIFY_DLQ_GROWTH_WINDOW'),
      intervalMs: duration('NOTIFY_DLQ_GROWTH_INTERVAL'),
    },
  };
}

/**
 * Parses NOTIFY_WEBHOOKS, "dlq_parked=https://ops.example.com/hook,*=https://chat.example.com/hook", into URLs per
 * kind ("*": every kind); a kind may be listed several times.
 */
function webhookUrls(raw: string): Record<NotificationKind, string[]> {
  const urls = Object.fromEntries(NOTIFICATION_KINDS.map((k) => [k, [] as string[]])) as Record<
    NotificationKind,
    string[]
  >;
  for (const item of raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const eq = item.indexOf('=');
    const kind = item.slice(0, eq).trim();
    const url = item.slice(eq + 1).trim();
    const kinds = kind === '*' ? NOTIFICATION_KINDS : NOTIFICATION_KINDS.filter((k) => k === kind);
    if (eq < 1 || kinds.length === 0) {
      throw new ConfigError(
        'NOTIFY_WEBHOOKS',
        `must list kind=url (kind: ${NOTIFICATION_KINDS.join(', ')} or *), got "${item}"`,
      );
    }
    if (!isWebhookUrl(url)) throw new ConfigError('NOTIFY_WEBHOOKS', `has "${url}", expected an http(s) URL`);
    for (const k of kinds) if (!urls[k].includes(url)) urls[k].push(url);
  }
  return urls;
}

/** Whether a webhook may be posted to this URL: absolute http or https, no credentials in it. */
export function isWebhookUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return (url.protocol === 'http:' || url.protocol === 'https:') && !url.username && !url.password;
  } catch {
    return false;
  }
}

// S3's bucket naming rules (lowercase, digits, '.', '-'; 3 to 63 characters; starts and ends alphanumeric).
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

function archiveConfig(
  read: (name: ConfigVariable) => string,
  url: (name: ConfigVariable, protocols: string[]) => string,
): ArchiveConfig {
  const store = read('ARCHIVE_STORE');
  if (store !== 'local' && store !== 's3')
    throw new ConfigError('ARCHIVE_STORE', `must be local or s3, got "${store}"`);
  const dir = read('ARCHIVE_DIR');
  if (store === 'local') return { store, dir, s3: undefined };
  const bucket = read('ARCHIVE_S3_BUCKET');
  if (!BUCKET.test(bucket)) {
    throw new ConfigError('ARCHIVE_S3_BUCKET', `must be an S3 bucket name with ARCHIVE_STORE=s3, got "${bucket}"`);
  }
  const accessKeyId = read('ARCHIVE_S3_ACCESS_KEY_ID');
  const secretAccessKey = read('ARCHIVE_S3_SECRET_ACCESS_KEY');
  if (Boolean(accessKeyId) !== Boolean(secretAccessKey)) {
    const missing = accessKeyId ? 'ARCHIVE_S3_SECRET_ACCESS_KEY' : 'ARCHIVE_S3_ACCESS_KEY_ID';
    throw new ConfigError(missing, 'must be set with the other half of the key pair (or leave both empty)');
  }
  return {
    store,
    dir,
    s3: {
      endpoint: read('ARCHIVE_S3_ENDPOINT') ? url('ARCHIVE_S3_ENDPOINT', ['http:', 'https:']) : undefined,
      bucket,
      region: read('ARCHIVE_S3_REGION'),
      accessKeyId: accessKeyId || undefined,
      secretAccessKey: secretAccessKey || undefined,
    },
  };
}

/** Parses JOURNAL_RETENTION, "apexflow.leads.created:400,apexflow.jobs.created:90,*:730", into days by topic. */
function retention(raw: string): Record<string, number> {
  const days: Record<string, number> = {};
  for (const item of raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const colon = item.lastIndexOf(':');
    const topic = item.slice(0, colon);
    const value = item.slice(colon + 1);
    if (colon <= 0 || !/^\d+$/.test(value) || Number(value) < 1) {
      throw new ConfigError('JOURNAL_RETENTION', `must list topic:days (days ≥ 1), got "${item}"`);
    }
    days[topic] = Number(value);
  }
  return days;
}

/**
 * API_TLS_CERT + API_TLS_KEY (PEM files, read and checked now so that a bad pair stops the start), or API_TLS=self-signed
 * (a pair made and kept under API_TLS_DIR when the API starts), or neither: plain HTTP.
 */
function apiTls(read: (name: ConfigVariable) => string): ApiTls | undefined {
  const mode = read('API_TLS');
  const certFile = read('API_TLS_CERT');
  const keyFile = read('API_TLS_KEY');
  if (mode !== '' && mode !== 'self-signed') {
    throw new ConfigError('API_TLS', `must be self-signed or empty (then API_TLS_CERT/API_TLS_KEY), got "${mode}"`);
  }
  if (mode === 'self-signed') {
    if (certFile || keyFile) {
      const set = certFile ? 'API_TLS_CERT' : 'API_TLS_KEY';
      throw new ConfigError('API_TLS', `is self-signed but ${set} is set too: choose one`);
    }
    return { source: 'self-signed', dir: path.resolve(read('API_TLS_DIR')) };
  }
  if (certFile && !keyFile)
    throw new ConfigError('API_TLS_KEY', "must be set with API_TLS_CERT (the certificate's key)");
  if (keyFile && !certFile) throw new ConfigError('API_TLS_CERT', 'must be set with API_TLS_KEY (its certificate)');
  if (!certFile) return undefined;
  readTlsPair(certFile, keyFile);
  return { source: 'files', certFile: path.resolve(certFile), keyFile: path.resolve(keyFile) };
}

/** Parses AUTH_JWT_SECRETS, "kid1:secret1,kid2:secret2", into secrets by kid. */
function keyRing(raw: string): Record<string, string> {
  const ring: Record<string, string> = {};
  const items = raw.split(',').map((s) => s.trim());
  for (const item of items.filter(Boolean)) {
    const colon = item.indexOf(':');
    const kid = item.slice(0, colon);
    const secret = item.slice(colon + 1);
    if (colon < 1 || !/^[\w.-]+$/.test(kid)) {
      throw new ConfigError(
        'AUTH_JWT_SECRETS',
        'must be kid:secret pairs separated by commas (kid: letters, digits, . _ -)',
      );
    }
    if (secret.length < 16)
      throw new ConfigError('AUTH_JWT_SECRETS', `has a secret shorter than 16 characters (kid ${kid})`);
    if (kid in ring) throw new ConfigError('AUTH_JWT_SECRETS', `lists kid ${kid} twice`);
    ring[kid] = secret;
  }
  return ring;
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses "500ms", "30s", "5m", "1h", "2d" into milliseconds; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(text.trim());
  if (!match) return undefined;
  return Number(match[1]) * UNIT_MS[match[2]];
}

/** Whether a listen address is reachable only from this host. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}
