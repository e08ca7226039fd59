import type { AddressInfo } from 'node:net';
import { createApiEnv, json, produceJournaled, type ApiEnv } from '../support/api';
import { findValue, seedSubject, type SubjectSeed } from '../support/erasure';
import { createTestBucket } from '../support/s3';
import { eventually } from '../support/sink';
import { connectSse, domainEvents } from '../support/sse';

/**
 * POST /erasure end to end on the real stack (Postgres, Kafka, ingest, the dev Temporal server and a worker), with the
 * archive on the local directory and on the S3-compatible server: dry-run counts, the erasure, then a grep of every
 * table and every archive file; reads and replays of erased ids answer 410; the live stream's resume skips them.
 */
describe.each(['local', 's3'] as const)('erasure with the archive on %s', (store) => {
  let env: ApiEnv;
  let base: string;
  let dropBucket: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    const extra: Record<string, string> = { API_REPLAY_RATE_LIMIT_PER_MINUTE: '10000' };
    if (store === 's3') {
      const bucket = await createTestBucket('erasure');
      dropBucket = bucket.drop;
      Object.assign(extra, {
        ARCHIVE_STORE: 's3',
        ARCHIVE_S3_ENDPOINT: bucket.config.endpoint!,
        ARCHIVE_S3_BUCKET: bucket.config.bucket,
        ARCHIVE_S3_ACCESS_KEY_ID: bucket.config.accessKeyId!,
        ARCHIVE_S3_SECRET_ACCESS_KEY: bucket.config.secretAccessKey!,
      });
    }
    env = await createApiEnv(`erasure-${store}`, { env: extra });
    await env.app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(env.app.server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    if (env) {
      // The bucket must be empty before it can go.
      for await (const object of env.h.archive.list('')) await env.h.archive.delete(object.key);
      await env.close();
    }
    await dropBucket?.();
  });

  const post = (url: string, body: unknown) =>
    env.app.inject({ method: 'POST', url, headers: { 'x-requested-by': 'test' }, payload: body as object });
  const get = (url: string) => env.app.inject({ method: 'GET', url });

  /** Starts an erasure and waits for its audit row to say it completed. */
  async function runErasure(body: Record<string, unknown>) {
    const started = await post('/erasure', { ...body, dry_run: false });
    expect(started.statusCode).toBe(202);
    const accepted = json<{ erasure_id: string; status_url: string; subject_hash: string }>(started);
    expect(accepted.status_url).toBe(`/erasure/${accepted.erasure_id}`);
    const audit = await eventually(async () => {
      const res = json<{ status: string }>(await get(accepted.status_url));
      return res.status === 'completed' ? res : undefined;
    }, `erasure ${accepted.erasure_id} completed`);
    return { ...accepted, audit };
  }

  it('refuses a body without exactly one target, and a field ERASURE_SUBJECT_FIELDS does not allow', async () => {
    const neither = await post('/erasure', { dry_run: true });
    expect(neither.statusCode).toBe(400);
    const both = await post('/erasure', { tenant_id: 'acme', subject: { field: 'email', value: 'a@b.c' } });
    expect(both.statusCode).toBe(400);
    const field = await post('/erasure', { subject: { field: 'name', value: 'Ann' } });
    expect(field.statusCode).toBe(400);
    expect(json(field).message).toContain('email, phone, lead_id');
  });

  it('dry-runs, erases a data subject everywhere, answers 410 for erased ids, and the stream resume skips them', async () => {
    const { h } = env;
    const seed: SubjectSeed = await seedSubject(h.pool, h.archive, h.topics.leads);
    const before = await produceJournaled(h, h.topics.leads, [
      { tenant_id: 'acme', name: 'before', email: 'keep@example.com' },
    ]);
    const [erasedId, keptId] = await produceJournaled(h, h.topics.leads, [
      { tenant_id: 'acme', email: seed.value, name: 'Ann' },
      { tenant_id: 'acme', email: 'keep@example.com', name: 'Bob' },
    ]);
    const subject = { field: 'email', value: seed.value };

    const dry = await post('/erasure', { subject });
    expect(dry.statusCode).toBe(200);
    expect(json(dry)).toMatchObject({
      status: 'dry_run',
      target: 'subject',
      field: 'email',
      counts: { journal: { rows: 5 }, dlq: { rows: 3 }, archive: { segments: 1, rows: 4 } },
    });
    expect(dry.payload).not.toContain(seed.value);
    // A dry run changes nothing and leaves no subject behind.
    expect((await findValue(h.pool, h.archive, seed.value)).length).toBeGreaterThan(0);
    expect((await h.pool.query('SELECT 1 FROM erasure_subjects')).rowCount).toBe(0);

    const { erasure_id, subject_hash, audit } = await runErasure({ subject });
    expect(subject_hash).toBe(json(dry).subject_hash);
    expect(audit).toMatchObject({
      erasure_id,
      status: 'completed',
      request: { target: 'subject', field: 'email', subject_hash },
      actions: [{ action: 'erased', journal_rows: 5, dlq_rows: 3, archive_segments: 1, archive_rows: 4 }],
    });
    expect(JSON.stringify(audit)).not.toContain(seed.value);
    expect(json<Array<{ erasure_id: string }>>(await get('/erasure')).map((e) => e.erasure_id)).toContain(erasure_id);

    // The grep: no table, no column, no archive file holds the value any more.
    expect(await findValue(h.pool, h.archive, seed.value)).toEqual([]);

    const read = await get(`/events/${erasedId}`);
    expect(read.statusCode).toBe(410);
    expect(json(read).message).toContain(erasure_id);
    const replay = await post(`/replay/${erasedId}`, undefined);
    expect(replay.statusCode).toBe(410);
    expect(json(replay).message).toContain(erasure_id);
    expect((await get(`/events/${keptId}`)).statusCode).toBe(200);

    const batch = await post('/replay/batch', { ids: [erasedId, keptId] });
    expect(batch.statusCode).toBe(202);
    const result = await env.client.workflow.getHandle(json<{ workflow_id: string }>(batch).workflow_id).result();
    expect(result).toMatchObject({ published: 1, unknown_ids: [], erased: [{ id: erasedId, erasure_id }] });

    // Resuming from before the erased event: the kept events come, the erased one does not.
    const sse = await connectSse(base, `?topic=${h.topics.leads}`, { 'last-event-id': String(before[0] - 1) });
    try {
      await eventually(
        async () => domainEvents(sse).some((f) => f.data.id === keptId),
        'the kept event resent on resume',
      );
      const ids = domainEvents(sse).map((f) => f.data.id);
      expect(ids).toContain(before[0]);
      expect(ids).not.toContain(erasedId);
      for (const id of seed.erasedJournalIds) expect(ids).not.toContain(id);
      expect(JSON.stringify(sse.frames)).not.toContain(seed.value);
    } finally {
      sse.close();
    }
  });

  it('offboards a tenant: dry-run counts, then no table or archive file holds the tenant', async () => {
    const { h } = env;
    const tenant = `offboarded-${Date.now().toString(36)}`;
    const ids = await produceJournaled(h, h.topics.jobs, [
      { tenant_id: tenant, n: 1 },
      { tenant_id: tenant, n: 2 },
      { tenant_id: 'stays', n: 3 },
    ]);
    await h.send(h.topics.jobs, [`{"tenant_id": "${tenant}", broken`]);
    await eventually(
      async () => (await h.pool.query('SELECT 1 FROM event_dlq WHERE strpos(raw_value, $1) > 0', [tenant])).rowCount,
      'the broken record dead-lettered',
    );

    const dry = await post('/erasure', { tenant_id: tenant, dry_run: true });
    expect(json(dry)).toMatchObject({ target: 'tenant', counts: { journal: { rows: 2 }, dlq: { rows: 1 } } });
    await runErasure({ tenant_id: tenant });
    expect(await findValue(h.pool, h.archive, tenant)).toEqual([]);
    expect((await get(`/events/${ids[0]}`)).statusCode).toBe(410);
    expect((await get(`/events/${ids[2]}`)).statusCode).toBe(200);
  });
});
