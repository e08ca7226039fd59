/** Record headers as kafkajs hands them over (and takes them): a value, several values, or none per name. */
export type RecordHeaders = Record<string, Buffer | string | (Buffer | string)[] | undefined>;

/** Headers as an ordered list of (name, value) pairs, duplicates kept: what the journal stores and replays. */
export type HeaderList = Array<[string, Buffer | null]>;

/** Where ApexFlow producers may name the tenant when the payload does not. */
export const TENANT_HEADER = 'x-tenant-id';

export function headerList(headers: RecordHeaders | undefined): HeaderList {
  const list: HeaderList = [];
  for (const [name, raw] of Object.entries(headers ?? {})) {
    for (const value of Array.isArray(raw) ? raw : [raw]) {
      // kafkajs collects headers in a plain object: a header named like an Object.prototype member (toString,
      // constructor) arrives as [inherited function, value]. Only bytes and strings are header values.
      if (value === undefined || value === null) list.push([name, null]);
      else if (Buffer.isBuffer(value)) list.push([name, value]);
      else if (typeof value === 'string') list.push([name, Buffer.from(value)]);
    }
  }
  return list;
}

/** The first value of a header, if present. */
export function headerValue(list: HeaderList, name: string): Buffer | undefined {
  return list.find(([n]) => n === name)?.[1] ?? undefined;
}

/** The last value of a header, if present (a replay appends its lineage after the original's headers). */
export function lastHeaderValue(list: HeaderList, name: string): Buffer | undefined {
  for (let i = list.length - 1; i >= 0; i--) if (list[i][0] === name) return list[i][1] ?? undefined;
  return undefined;
}

/**
 * The list as stored in kafka_headers: JSON pairs of base64 name and base64 value (null for a header without value).
 * Base64 because header names and values are bytes that Postgres text and jsonb cannot always hold (NUL).
 */
export function encodeHeaders(list: HeaderList): string | null {
  if (list.length === 0) return null;
  return JSON.stringify(
    list.map(([name, value]) => [Buffer.from(name).toString('base64'), value?.toString('base64') ?? null]),
  );
}

export function decodeHeaders(stored: unknown): HeaderList {
  if (!Array.isArray(stored)) return [];
  return stored.map(([name, value]: [string, string | null]) => [
    Buffer.from(name, 'base64').toString('utf8'),
    value === null ? null : Buffer.from(value, 'base64'),
  ]);
}

/** Back to the shape a producer takes; a name that occurs more than once becomes an array, in order. */
export function toRecordHeaders(list: HeaderList): RecordHeaders {
  const headers: RecordHeaders = {};
  for (const [name, value] of list) {
    if (value === null) continue; // kafkajs cannot send a header without a value
    const existing = headers[name];
    if (existing === undefined) headers[name] = value;
    else headers[name] = [...(Array.isArray(existing) ? existing : [existing]), value];
  }
  return headers;
}
