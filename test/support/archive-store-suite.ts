import fc from 'fast-check';
import { randomBytes, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  checkConditionalWrites,
  listSegments,
  readManifest,
  readSegment,
  rewriteSegment,
  verifySegment,
  writeSegment,
  type ArchiveRow,
  type ArchiveStore,
  type RewriteResult,
  type SegmentManifest,
} from '../../archive';
import { tap } from '../../archive/streams';
import { archiveRow, collect, plainRow, readObject, storeContents, withIds } from './archive';

let sequence = 0;
const segmentName = (label: string) => `seg_${label}_${Date.now().toString(36)}_${sequence++}`;

/** Rejects with an error of that name (names, not instanceof: jest realms). */
async function rejectsWith(promise: Promise<unknown>, name: string): Promise<Error> {
  const err = await promise.then(
    () => undefined,
    (e: Error) => e,
  );
  expect(err?.name).toBe(name);
  return err!;
}

async function archive(store: ArchiveStore, label: string, rows: ArchiveRow[]): Promise<SegmentManifest> {
  return writeSegment(store, { segment: segmentName(label), table: 'event_journal', rows, expectedRows: rows.length });
}

async function dropSegment(store: ArchiveStore, segment: string): Promise<void> {
  for (const object of await collect(store.list(`segments/${segment}/`))) await store.delete(object.key);
}

/** Rows whose payload gzip cannot shrink much: a segment of a few MB from a few thousand rows. */
function noisyRows(count: number): ArchiveRow[] {
  return Array.from({ length: count }, (_, i) =>
    plainRow(i + 1, JSON.stringify({ noise: randomBytes(150).toString('base64') })),
  );
}

/**
 * The behaviour every ArchiveStore must show with the segment format on top: the same tests run against the local
 * directory and the S3-compatible server. `store()` is read when each test runs (stores are made in beforeAll).
 */
export function archiveStoreBehaviour(store: () => ArchiveStore): void {
  it('round-trips generated rows: written, verified, read back equal row for row (payload text byte-equal)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(archiveRow, { maxLength: 40 }), async (generated) => {
        const rows = withIds(generated, 1000);
        const manifest = await archive(store(), 'roundtrip', rows);
        expect(manifest.rows).toBe(rows.length);
        await verifySegment(store(), manifest.segment, { expectedRows: rows.length });
        const back = await collect(readSegment(store(), manifest.segment));
        expect(back).toEqual(rows);
        back.forEach((row, i) => expect(Buffer.from(row.payload).equals(Buffer.from(rows[i].payload))).toBe(true));
      }),
      { numRuns: 15 },
    );
  });

  it('describes the segment in its manifest and lists it', async () => {
    const rows = [plainRow(7, '{"a": 1}'), plainRow(3, '{"a": 2}'), plainRow(12, '{"a": 3}')];
    const segment = segmentName('manifest');
    const bounds = { from: '2026-01-01T00:00:00Z', to: '2026-01-02T00:00:00Z' };
    const manifest = await writeSegment(store(), { segment, table: 'event_journal_p20260101', bounds, rows });
    expect(manifest).toMatchObject({
      segment,
      table: 'event_journal_p20260101',
      bounds,
      rows: 3,
      id: { min: 3, max: 12 },
      received_at: { min: rows[1].received_at, max: rows[2].received_at },
      generation: 1,
      file: { compression: 'gzip' },
    });
    expect(manifest.file.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(await readManifest(store(), segment)).toEqual(manifest);
    expect((await listSegments(store())).find((m) => m.segment === segment)).toEqual(manifest);
    expect((await store().stat(manifest.file.key))?.size).toBe(manifest.file.bytes);
  });

  it('refuses to archive a segment twice (or verifies it), and a write whose count is not the source count leaves nothing', async () => {
    const rows = [plainRow(1, '{}'), plainRow(2, '{}')];
    const manifest = await archive(store(), 'twice', rows);
    await rejectsWith(writeSegment(store(), { segment: manifest.segment, table: 't', rows }), 'SegmentExistsError');
    // A retried archiving finds the segment done: verified, not written again, its rows not even read.
    const untouched: AsyncIterable<ArchiveRow> = {
      [Symbol.asyncIterator]: () => {
        throw new Error('the rows of an archived segment were read again');
      },
    };
    const again = await writeSegment(store(), {
      segment: manifest.segment,
      table: 't',
      rows: untouched,
      expectedRows: 2,
      ifExists: 'verify',
    });
    expect(again).toEqual(manifest);
    await rejectsWith(
      writeSegment(store(), { segment: manifest.segment, table: 't', rows, expectedRows: 3, ifExists: 'verify' }),
      'ArchiveVerifyError',
    );

    const segment = segmentName('short');
    const err = await rejectsWith(
      writeSegment(store(), { segment, table: 't', rows, expectedRows: 3 }),
      'ArchiveVerifyError',
    );
    expect(err.message).toMatch(/2 rows written, the source has 3/);
    expect(await collect(store().list(`segments/${segment}/`))).toEqual([]);
  });

  it('verify detects a truncated file, a corrupted byte and a manifest whose count is wrong', async () => {
    const truncated = await archive(store(), 'truncated', noisyRows(500));
    const whole = await readObject(store(), truncated.file.key);
    await store().put(truncated.file.key, whole.subarray(0, Math.floor(whole.length / 2)));
    let err = await rejectsWith(verifySegment(store(), truncated.segment), 'ArchiveVerifyError');
    expect(err.message).toMatch(/does not decompress/);
    err = await rejectsWith(collect(readSegment(store(), truncated.segment)), 'ArchiveVerifyError');
    expect(err.message).toMatch(/does not decompress/);

    const corrupted = await archive(store(), 'corrupted', noisyRows(500));
    const bytes = Buffer.from(await readObject(store(), corrupted.file.key));
    bytes[Math.floor(bytes.length / 2)] ^= 0xff;
    await store().put(corrupted.file.key, bytes);
    err = await rejectsWith(verifySegment(store(), corrupted.segment), 'ArchiveVerifyError');
    expect(err.message).toMatch(/sha256/);

    const miscounted = await archive(store(), 'miscounted', noisyRows(20));
    await rejectsWith(verifySegment(store(), miscounted, { expectedRows: 21 }), 'ArchiveVerifyError');
    const lying = { ...miscounted, rows: 21 };
    err = await rejectsWith(verifySegment(store(), lying), 'ArchiveVerifyError');
    expect(err.message).toMatch(/rows is 20 in the stored file, 21 expected/);
    err = await rejectsWith(collect(readSegment(store(), lying)), 'ArchiveVerifyError');
    expect(err.message).toMatch(/20 rows read, the manifest counts 21/);
    // The broken files go, so that the erasure tests below can decompress every file of the store.
    for (const manifest of [truncated, corrupted, miscounted]) await dropSegment(store(), manifest.segment);
  });

  it('reads only what the filter asks for', async () => {
    const rows = Array.from({ length: 30 }, (_, i) =>
      plainRow(i + 1, `{"n": ${i}}`, {
        tenant_id: i % 3 === 0 ? 'acme' : 'globex',
        topic: i % 2 === 0 ? 'apexflow.leads.created' : 'apexflow.jobs.created',
        replay_count: i % 5 === 0 ? 1 : 0,
      }),
    );
    const manifest = await archive(store(), 'filter', rows);
    const filter = { tenantId: 'acme', topic: 'apexflow.leads.created', idAfter: 3, idAtMost: 25, originalsOnly: true };
    const ids = (await collect(readSegment(store(), manifest, { filter }))).map((r) => r.id);
    const expected = rows
      .filter((r) => r.tenant_id === 'acme' && r.topic === 'apexflow.leads.created' && r.id > 3 && r.id <= 25)
      .filter((r) => r.replay_count === 0)
      .map((r) => r.id);
    expect(ids).toEqual(expected);
    expect(ids.length).toBeGreaterThan(0);
    const byTime = await collect(
      readSegment(store(), manifest, {
        filter: { receivedFrom: rows[9].received_at, receivedBefore: rows[12].received_at },
      }),
    );
    expect(byTime.map((r) => r.id)).toEqual([10, 11, 12]);
  });

  it('streams: the first row is read before most of the file, and the writer sends bytes before its rows run out', async () => {
    const count = 8000;
    let produced = 0;
    let producedAtFirstByte: number | undefined;
    async function* source(): AsyncGenerator<ArchiveRow> {
      for (const row of noisyRows(count)) {
        produced++;
        yield row;
      }
    }
    const watching: ArchiveStore = {
      ...store(),
      put: (key: string, body: Readable | Buffer) =>
        store().put(key, Buffer.isBuffer(body) ? body : body.pipe(tap(() => (producedAtFirstByte ??= produced)))),
    };
    const seen: Array<{ phase: string; rows: number }> = [];
    const manifest = await writeSegment(watching, {
      segment: segmentName('stream'),
      table: 't',
      rows: source(),
      onProgress: ({ phase, rows }) => seen.push({ phase, rows }),
    });
    expect(manifest.rows).toBe(count);
    expect(producedAtFirstByte).toBeLessThan(count / 4);
    // Progress is told all along both phases (what an activity heartbeats on), ending at the full count.
    const writes = seen.filter((p) => p.phase === 'write');
    expect(writes.length).toBeGreaterThan(5);
    expect(writes.at(-1)!.rows).toBe(count);
    expect(seen.at(-1)).toEqual({ phase: 'verify', rows: count });

    let delivered = 0;
    const counting: ArchiveStore = {
      ...store(),
      get: async (key: string) => {
        const raw = await store().get(key);
        const counted = raw.pipe(tap((chunk) => (delivered += chunk.length)));
        counted.on('close', () => raw.destroy()); // pipe() does not pass a destroy upstream
        return counted;
      },
    };
    for await (const row of readSegment(counting, manifest)) {
      expect(row.id).toBe(1);
      break;
    }
    expect(manifest.file.bytes).toBeGreaterThan(1_000_000);
    expect(delivered).toBeLessThan(manifest.file.bytes / 4);
  });

  it('rewrite removes an erased value from every file of the store and counts what it did', async () => {
    const email = `erase-me-${randomUUID()}@example.com`;
    const rows = Array.from({ length: 40 }, (_, i) =>
      plainRow(
        i + 1,
        i % 4 === 0 ? JSON.stringify({ email, n: i }) : JSON.stringify({ email: `other${i}@x.io`, n: i }),
      ),
    );
    const before = await archive(store(), 'erasure', rows);
    expect([...(await storeContents(store())).values()].some((text) => text.includes(email))).toBe(true);

    // Rows of the subject: drop the even ones, redact the others.
    const result = await rewriteSegment(store(), before.segment, (row) => {
      if (!row.payload.includes(email)) return 'keep';
      return row.id % 8 === 1 ? 'drop' : { replace: { ...row, payload: '{"email": "[erased]"}' } };
    });
    expect(result).toMatchObject({ changed: true, kept: 30, dropped: 5, replaced: 5 });
    expect(result.deleted).toEqual([before.file.key]);
    expect(result.manifest).toMatchObject({ generation: 2, rows: 35, rewrite: { kept: 30, dropped: 5, replaced: 5 } });
    expect(result.manifest.file.key).not.toBe(before.file.key);
    await verifySegment(store(), before.segment, { expectedRows: 35 });
    for (const [key, text] of await storeContents(store()))
      expect({ key, found: text.includes(email) }).toEqual({ key, found: false });
    const back = await collect(readSegment(store(), before.segment));
    expect(back.map((r) => r.id)).toEqual(rows.filter((r) => !(r.id % 4 === 1 && r.id % 8 === 1)).map((r) => r.id));
    expect(back.filter((r) => r.payload.includes('[erased]'))).toHaveLength(5);
  });

  it('a rewrite run again after dying before its delete removes the stale file; nothing to change writes nothing', async () => {
    const secret = `phone-${randomUUID()}`;
    const rows = [plainRow(1, JSON.stringify({ phone: secret })), plainRow(2, '{"phone": "x"}')];
    const before = await archive(store(), 'resume', rows);
    const oldFile = await readObject(store(), before.file.key);
    const erase = (row: ArchiveRow) => (row.payload.includes(secret) ? ('drop' as const) : ('keep' as const));
    await rewriteSegment(store(), before.segment, erase);
    // As if the first rewrite had died after the manifest swap, before deleting the previous generation.
    await store().put(before.file.key, oldFile);

    const again = await rewriteSegment(store(), before.segment, erase);
    expect(again).toMatchObject({ changed: false, kept: 1, dropped: 0, replaced: 0, deleted: [before.file.key] });
    expect(again.manifest.generation).toBe(2);
    for (const text of (await storeContents(store())).values()) expect(text.includes(secret)).toBe(false);
    expect((await collect(readSegment(store(), before.segment))).map((r) => r.id)).toEqual([2]);
  });

  it('a rewrite overtaken by another (a pass that lost its lock) switches nothing: what the other erased stays erased', async () => {
    const [alice, bob] = [`alice-${randomUUID()}`, `bob-${randomUUID()}`];
    const rows = Array.from({ length: 30 }, (_, i) =>
      plainRow(i + 1, JSON.stringify({ who: i % 3 === 0 ? alice : i % 3 === 1 ? bob : `other-${i}` })),
    );
    const before = await archive(store(), 'overtaken', rows);
    const dropping = (name: string) => (row: ArchiveRow) => (row.payload.includes(name) ? 'drop' : 'keep') as 'drop';
    // Alice's rewrite has its new generation verified when Bob's runs whole (it took the turn Alice's pass lost).
    let bobs: RewriteResult | undefined;
    const late = rewriteSegment(store(), before.segment, dropping(alice), {
      beforeSwitch: async () => void (bobs = await rewriteSegment(store(), before.segment, dropping(bob))),
    });
    await rejectsWith(late, 'ArchiveObjectChangedError');
    // Alice's refused file (made from generation 1, Bob's rows in it) is gone too, not left for a later sweep.
    const segmentKeys = async () =>
      [...(await storeContents(store())).keys()].filter((k) => k.includes(`/${before.segment}/`)).sort();
    expect(await segmentKeys()).toEqual([bobs!.manifest.file.key, `segments/${before.segment}/manifest.json`].sort());
    // Before: Alice's switch put Bob's rows back, or named a file Bob's sweep had deleted (every row lost).
    const after = await collect(readSegment(store(), before.segment));
    expect(after.map((r) => r.id)).toEqual(rows.filter((r) => !r.payload.includes(bob)).map((r) => r.id));
    // Run again, Alice's erasure goes through on top of Bob's, and only the segment's current file is left.
    const again = await rewriteSegment(store(), before.segment, dropping(alice));
    expect(again).toMatchObject({ changed: true, dropped: 10, manifest: { generation: 3, rows: 10 } });
    expect(await segmentKeys()).toEqual([again.manifest.file.key, `segments/${before.segment}/manifest.json`].sort());
    for (const text of (await storeContents(store())).values()) {
      expect([text.includes(alice), text.includes(bob)]).toEqual([false, false]);
    }
  });

  it('refuses a replace at a stale version (the check before a rewrite passes); a store taking it fails the check', async () => {
    const checkObjects = async () => (await collect(store().list('checks/'))).map((o) => o.key);
    await checkConditionalWrites(store());
    // A server that ignores If-Match on PUT, as the check sees it: every replace is a plain put.
    const blind: ArchiveStore = {
      ...store(),
      replaceIfVersion: (key, body) =>
        store()
          .put(key, body)
          .then(() => undefined),
    };
    const err = await rejectsWith(checkConditionalWrites(blind), 'ArchiveConditionalWriteError');
    expect(err.message).toContain(store().location);
    expect(err.message).toContain('If-Match');
    expect(await checkObjects()).toEqual([]);
  });

  it('answers a missing segment and a missing object by name', async () => {
    await rejectsWith(readManifest(store(), segmentName('absent')), 'SegmentNotFoundError');
    await rejectsWith(store().get('segments/absent/nothing.gz'), 'ArchiveObjectNotFoundError');
    expect(await store().stat('segments/absent/nothing.gz')).toBeUndefined();
    await store().delete('segments/absent/nothing.gz');
    await expect(store().stat('../escape')).rejects.toThrow(/Invalid archive key/);
  });
}
