import fs from 'node:fs';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { parseArgs } from 'node:util';
import { createGzip } from 'node:zlib';
import { Presets, SingleBar } from 'cli-progress';
import { EXPORT_FIRST_ID_HEADER, EXPORT_LAST_ID_HEADER } from '../../api/routes/events-export';
import { ApiClient } from '../api-client';

const HELP = `Usage:
  crm-events-sink export --out FILE [--tenant T] [--topic T] [--since ISO] [--until ISO]
                         [--replayed true|false] [--payload-filter JSONPATH] [--gzip]
Writes every journal row matching the filter (GET /events/export) to FILE as NDJSON, oldest first; --gzip writes
it gzipped. A progress bar on stderr shows how far through the journal's ids the export is.`;

/** `export ...`: a filtered journal export to a file, through the API. */
export async function exportCommand(argv: string[], api = new ApiClient()): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: 'string' },
      tenant: { type: 'string' },
      topic: { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      replayed: { type: 'string' },
      'payload-filter': { type: 'string' },
      gzip: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help || !values.out) return void console.log(HELP);
  const query = new URLSearchParams();
  const add = (name: string, value: string | undefined) => value !== undefined && query.set(name, value);
  add('tenant_id', values.tenant);
  add('topic', values.topic);
  add('since', values.since);
  add('until', values.until);
  add('replayed', values.replayed);
  add('payload_filter', values['payload-filter']);

  const res = await api.stream(`/events/export?${query}`);
  const first = Number(res.headers.get(EXPORT_FIRST_ID_HEADER) ?? 0);
  const last = Number(res.headers.get(EXPORT_LAST_ID_HEADER) ?? 0);
  const bar = new SingleBar(
    {
      format: 'export [{bar}] {percentage}% of the journal | {rows} rows | {file}',
      stream: process.stderr,
      noTTYOutput: true,
      notTTYSchedule: 1000,
    },
    Presets.shades_classic,
  );
  const span = Math.max(1, last - first + 1);
  bar.start(span, 0, { rows: 0, file: values.out });
  const progress = new LineProgress((rows, id) => bar.update(Math.min(span, id - first + 1), { rows }));
  const body = Readable.fromWeb(res.body as WebReadableStream<Uint8Array>);
  const out = fs.createWriteStream(values.out);
  try {
    await (values.gzip ? pipeline(body, progress, createGzip(), out) : pipeline(body, progress, out));
  } finally {
    bar.update(span, { rows: progress.rows });
    bar.stop();
  }
  console.error(`Wrote ${progress.rows} events to ${values.out}`);
}

/** Passes NDJSON through unchanged, counting lines and reading the id each complete line starts with. */
class LineProgress extends Transform {
  rows = 0;
  private tail = '';

  constructor(private readonly onLines: (rows: number, lastId: number) => void) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    const text = this.tail + chunk.toString('utf8');
    const end = text.lastIndexOf('\n');
    this.tail = text.slice(end + 1);
    if (end >= 0) {
      let count = 0;
      for (let i = text.indexOf('\n'); i >= 0 && i <= end; i = text.indexOf('\n', i + 1)) count++;
      this.rows += count;
      // Lines start with {"id" : N: the export writes id first.
      const lastLine = text.slice(text.lastIndexOf('\n', end - 1) + 1, end);
      const id = Number(/^\{"id"\s*:\s*(\d+)/.exec(lastLine)?.[1] ?? NaN);
      if (Number.isFinite(id)) this.onLines(this.rows, id);
    }
    done(null, chunk);
  }
}
