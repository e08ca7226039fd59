import fc from 'fast-check';
import { canonicalTime, rowMatcher, segmentMayMatch, type SegmentManifest } from '../../archive';
import { decodeRow, encodeRow } from '../../archive/row';
import { splitLines } from '../../archive/streams';
import { loadConfig } from '../../shared/config';
import { archiveRow, collect, plainRow, withIds } from '../support/archive';

async function* chunked(bytes: Buffer, cuts: number[]): AsyncGenerator<Buffer> {
  let start = 0;
  for (const cut of [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)) {
    yield bytes.subarray(start, cut);
    start = cut;
  }
  yield bytes.subarray(start);
}

describe('splitLines', () => {
  it('gives back every line whatever the chunk boundaries (inside characters, lines longer than chunks)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.string({ unit: 'binary', maxLength: 300 }).map((s) => s.replace(/\n/g, '')),
          { maxLength: 20 },
        ),
        fc.array(fc.nat(20_000), { maxLength: 30 }),
        async (lines, cuts) => {
          const bytes = Buffer.from(lines.map((l) => `${l}\n`).join(''), 'utf8');
          expect(await collect(splitLines(chunked(bytes, cuts)))).toEqual(lines);
        },
      ),
    );
  });

  it('yields a last line that lost its newline, so that a count can tell the file was cut', async () => {
    expect(await collect(splitLines(chunked(Buffer.from('a\nbc'), [3])))).toEqual(['a', 'bc']);
  });
});

describe('row lines', () => {
  it('decode what they encode, one line each', () => {
    fc.assert(
      fc.property(fc.array(archiveRow, { maxLength: 5 }), (rows) => {
        for (const row of withIds(rows)) {
          const line = encodeRow(row);
          expect(line.indexOf('\n')).toBe(line.length - 1);
          expect(decodeRow(line.slice(0, -1), 's', 1)).toEqual(row);
        }
      }),
    );
  });

  it('name the segment, the line and the field of a bad row', () => {
    expect(() => decodeRow('{"id": 1}', 'seg_a', 7)).toThrow(/seg_a.*line 7: bad or missing tenant_id/);
    expect(() => decodeRow('not json', 'seg_a', 3)).toThrow(/line 3 is not JSON/);
    const row = JSON.parse(encodeRow(plainRow(1, '{}'))) as Record<string, unknown>;
    expect(() => decodeRow(JSON.stringify({ ...row, id: '1' }), 's', 1)).toThrow(/bad or missing id/);
  });
});

describe('filters', () => {
  it('compare times in the archive form, microseconds included', () => {
    expect(canonicalTime('2026-01-01T00:00:00Z')).toBe('2026-01-01T00:00:00.000000Z');
    expect(canonicalTime('2026-01-01T01:00:00+01:00')).toBe('2026-01-01T00:00:00.000000Z');
    expect(canonicalTime('2026-01-01T00:00:00.000250Z')).toBe('2026-01-01T00:00:00.000250Z');
    expect(() => canonicalTime('yesterday')).toThrow(/Not a time/);
    const early = plainRow(1, '{}', { received_at: '2026-01-01T00:00:00.000250Z' });
    const match = rowMatcher({ receivedFrom: '2026-01-01T00:00:00.000250Z', receivedBefore: '2026-01-01T00:00:01Z' });
    expect(match(early)).toBe(true);
    expect(rowMatcher({ receivedFrom: '2026-01-01T00:00:00.000251Z' })(early)).toBe(false);
  });

  it('skip a segment whose id or time range cannot match', () => {
    const manifest = {
      id: { min: 100, max: 200 },
      received_at: { min: '2026-01-01T00:00:00.000000Z', max: '2026-01-01T23:59:59.999999Z' },
    } as SegmentManifest;
    expect(segmentMayMatch(manifest, {})).toBe(true);
    expect(segmentMayMatch(manifest, { idAfter: 200 })).toBe(false);
    expect(segmentMayMatch(manifest, { idAfter: 199, idAtMost: 100 })).toBe(true);
    expect(segmentMayMatch(manifest, { idAtMost: 99 })).toBe(false);
    expect(segmentMayMatch(manifest, { receivedFrom: '2026-01-02T00:00:00Z' })).toBe(false);
    expect(segmentMayMatch(manifest, { receivedBefore: '2026-01-01T00:00:00Z' })).toBe(false);
    expect(segmentMayMatch(manifest, { receivedBefore: '2026-01-01T00:00:00.000001Z' })).toBe(true);
    expect(segmentMayMatch({ ...manifest, id: null, received_at: null }, {})).toBe(false);
  });
});

describe('archive configuration', () => {
  it('is a local directory by default', () => {
    expect(loadConfig({}).archive).toEqual({ store: 'local', dir: '.stack/archive', s3: undefined });
  });

  it('reads an S3-compatible bucket', () => {
    const config = loadConfig({
      ARCHIVE_STORE: 's3',
      ARCHIVE_S3_ENDPOINT: 'http://127.0.0.1:9000',
      ARCHIVE_S3_BUCKET: 'crm-archive',
      ARCHIVE_S3_ACCESS_KEY_ID: 'id',
      ARCHIVE_S3_SECRET_ACCESS_KEY: 'secret',
    });
    expect(config.archive.s3).toEqual({
      endpoint: 'http://127.0.0.1:9000',
      bucket: 'crm-archive',
      region: 'us-east-1',
      accessKeyId: 'id',
      secretAccessKey: 'secret',
    });
  });

  it.each([
    [{ ARCHIVE_STORE: 'tape' }, 'ARCHIVE_STORE'],
    [{ ARCHIVE_STORE: 's3' }, 'ARCHIVE_S3_BUCKET'],
    [{ ARCHIVE_STORE: 's3', ARCHIVE_S3_BUCKET: 'Bad_Name' }, 'ARCHIVE_S3_BUCKET'],
    [{ ARCHIVE_STORE: 's3', ARCHIVE_S3_BUCKET: 'ok-bucket', ARCHIVE_S3_ENDPOINT: 'ftp://x' }, 'ARCHIVE_S3_ENDPOINT'],
    [
      { ARCHIVE_STORE: 's3', ARCHIVE_S3_BUCKET: 'ok-bucket', ARCHIVE_S3_ACCESS_KEY_ID: 'id' },
      'ARCHIVE_S3_SECRET_ACCESS_KEY',
    ],
  ])('names the bad variable: %j', (env, variable) => {
    expect(() => loadConfig(env)).toThrow(expect.objectContaining({ name: 'ConfigError', variable }));
  });
});
