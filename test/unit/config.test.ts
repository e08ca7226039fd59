import fs from 'node:fs';
import path from 'node:path';
import { DEFAULTS, loadConfig, parseDuration } from '../../shared/config';

describe('loadConfig', () => {
  it('uses the documented defaults when nothing is set', () => {
    const config = loadConfig({});
    expect(config.databaseUrl).toBe('postgres://crm_events:crm_events@127.0.0.1:5446/crm_events');
    expect(config.kafka.topics).toEqual(['apexflow.leads.created', 'apexflow.jobs.created']);
    expect(config.kafka.groupId).toBe('crm-events-sink');
    expect(config.metrics.port).toBe(9105);
    expect(config.api.port).toBe(9106);
    expect(config.api.jwtSecret).toBeUndefined();
    expect(config.dlqRetry.intervalMs).toBe(5 * 60_000);
    expect(config.replay.maxHops).toBe(3);
  });

  it('binds the API and metrics to this host only, with auth off, by default', () => {
    const config = loadConfig({});
    expect(config.api.host).toBe('127.0.0.1');
    expect(config.metrics.host).toBe('127.0.0.1');
    expect(config.api.authMode).toBe('none');
    expect(config.api.openOnPurpose).toBe(false);
  });

  it.each([
    [{ API_HOST: '0.0.0.0' }, /API_HOST is "0.0.0.0", reachable from other hosts, and auth is off/],
    [{ METRICS_HOST: '10.0.0.5' }, /METRICS_HOST is "10.0.0.5", reachable from other hosts, and auth is off/],
    [{ API_HOST: '::' }, /API_HOST is "::"/],
    [{ AUTH_MODE: 'jwt' }, /AUTH_JWT_SECRET must be set when AUTH_MODE=jwt/],
    [{ AUTH_MODE: 'none', AUTH_JWT_SECRET: 'sixteen-chars-or-more' }, /AUTH_MODE is none but AUTH_JWT_SECRET is set/],
    [{ AUTH_MODE: 'open' }, /AUTH_MODE must be jwt, none or empty/],
  ])('refuses %j: nothing unauthenticated listens beyond this host by accident', (env, message) => {
    expect(() => loadConfig(env)).toThrow(message);
  });

  it.each([
    [{ API_HOST: '0.0.0.0', METRICS_HOST: '0.0.0.0', AUTH_JWT_SECRET: 'sixteen-chars-or-more' }, 'jwt', false],
    [{ API_HOST: '0.0.0.0', METRICS_HOST: '0.0.0.0', AUTH_MODE: 'none' }, 'none', true],
    [{ API_HOST: 'localhost', METRICS_HOST: '127.0.0.2' }, 'none', false],
  ])('accepts %j (auth %s, open on purpose: %s)', (env, mode, open) => {
    const config = loadConfig(env);
    expect(config.api.authMode).toBe(mode);
    expect(config.api.openOnPurpose).toBe(open);
  });

  it.each([
    ['API_PORT', 'abc', /API_PORT must be a whole number/],
    ['API_PORT', '70000', /API_PORT must be between 0 and 65535/],
    ['KAFKA_BROKERS', 'localhost', /KAFKA_BROKERS has "localhost", expected host:port/],
    ['DATABASE_URL', 'mysql://x@y/z', /DATABASE_URL must use postgres: or postgresql:/],
    ['DATABASE_URL', 'not a url', /DATABASE_URL must be a URL/],
    ['KAFKA_FROM_BEGINNING', 'maybe', /KAFKA_FROM_BEGINNING must be true or false/],
    ['DLQ_RETRY_INTERVAL', '5 minutes', /DLQ_RETRY_INTERVAL must be a duration/],
    ['LOG_LEVEL', 'loud', /LOG_LEVEL must be one of/],
    ['AUTH_JWT_SECRET', 'short', /AUTH_JWT_SECRET must be at least 16 characters/],
    ['TEMPORAL_ADDRESS', 'http://x', /TEMPORAL_ADDRESS must be host:port/],
  ])('fails fast naming %s when it is %j', (variable, value, message) => {
    expect(() => loadConfig({ [variable]: value })).toThrow(message);
    try {
      loadConfig({ [variable]: value });
    } catch (err) {
      expect((err as Error).name).toBe('ConfigError');
      expect((err as { variable: string }).variable).toBe(variable);
    }
  });

  it('reads NOTIFY_WEBHOOKS as URLs per kind ("*": every kind), and needs a signing secret with any URL', () => {
    const config = loadConfig({
      NOTIFY_WEBHOOKS:
        'dlq_parked=https://pager.example.com/a, *=http://127.0.0.1:5002/all,dlq_parked=https://b.example/x',
      NOTIFY_SIGNING_SECRET: 'sixteen-chars-or-more',
    });
    expect(config.notifications.urls).toEqual({
      dlq_parked: ['https://pager.example.com/a', 'http://127.0.0.1:5002/all', 'https://b.example/x'],
      dlq_group_growing: ['http://127.0.0.1:5002/all'],
      replay_completed: ['http://127.0.0.1:5002/all'],
      replay_failed: ['http://127.0.0.1:5002/all'],
      erasure_completed: ['http://127.0.0.1:5002/all'],
    });
    expect(loadConfig({}).notifications).toMatchObject({ signingSecret: undefined, maxAttempts: 8, backoffMs: 10_000 });
  });

  it.each([
    [
      { NOTIFY_WEBHOOKS: 'dlq_parked=https://a.example/x' },
      'NOTIFY_SIGNING_SECRET',
      /must be set when NOTIFY_WEBHOOKS/,
    ],
    [{ NOTIFY_SIGNING_SECRET: 'short' }, 'NOTIFY_SIGNING_SECRET', /at least 16 characters/],
    [{ NOTIFY_WEBHOOKS: 'lead_created=https://a.example/x' }, 'NOTIFY_WEBHOOKS', /must list kind=url/],
    [{ NOTIFY_WEBHOOKS: 'https://a.example/x' }, 'NOTIFY_WEBHOOKS', /must list kind=url/],
    [{ NOTIFY_WEBHOOKS: 'dlq_parked=ftp://a.example/x' }, 'NOTIFY_WEBHOOKS', /expected an http\(s\) URL/],
    [{ NOTIFY_TIMEOUT: '2m' }, 'NOTIFY_TIMEOUT', /at most 50s/],
    [{ NOTIFY_MAX_ATTEMPTS: '0' }, 'NOTIFY_MAX_ATTEMPTS', /between 1 and 50/],
  ])('refuses notification settings %j naming the variable', (env, variable, message) => {
    expect(() => loadConfig(env)).toThrow(message);
    expect(() => loadConfig(env)).toThrow(expect.objectContaining({ variable }));
  });

  it('lists every variable with its default in .env.example', () => {
    const example = fs.readFileSync(path.join(__dirname, '../../.env.example'), 'utf8');
    const listed = Object.fromEntries(
      example
        .split('\n')
        .filter((line) => /^[A-Z][A-Z0-9_]*=/.test(line))
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    );
    expect(listed).toEqual(DEFAULTS);
  });
});

describe('parseDuration', () => {
  it.each([
    ['500ms', 500],
    ['30s', 30_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['2d', 172_800_000],
  ])('%s is %d ms', (text, ms) => expect(parseDuration(text)).toBe(ms));
  it('rejects malformed durations', () => {
    expect(parseDuration('5')).toBeUndefined();
    expect(parseDuration('m5')).toBeUndefined();
  });
});
