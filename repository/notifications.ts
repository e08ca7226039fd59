import type { NotificationDeliveryStatus, NotificationKind } from '../journal/kinds';
import type { Queryable } from './queryable';

/** URLs one kind of notification is posted to, as set by PUT /notifications. */
export interface EndpointRow {
  kind: NotificationKind;
  urls: string[];
  updated_by: string;
  updated_at: Date;
}

export async function listEndpointRows(db: Queryable): Promise<EndpointRow[]> {
  const { rows } = await db.query<EndpointRow>(
    'SELECT kind, urls, updated_by, updated_at FROM notification_endpoints ORDER BY kind',
  );
  return rows;
}

/** Sets the URLs of the kinds given, all at once (an empty list: that kind is posted nowhere); others keep theirs. */
export async function putEndpointRows(
  db: Queryable,
  endpoints: Partial<Record<NotificationKind, string[]>>,
  actor: string,
): Promise<void> {
  const kinds = Object.keys(endpoints) as NotificationKind[];
  if (kinds.length === 0) return;
  // Arrays of arrays do not bind as text[][] of uneven lengths: each kind's list travels as one JSON array.
  await db.query(
    `INSERT INTO notification_endpoints (kind, urls, updated_by)
     SELECT k, ARRAY(SELECT jsonb_array_elements_text(u)), $3 FROM unnest($1::text[], $2::jsonb[]) AS e(k, u)
     ON CONFLICT (kind) DO UPDATE SET urls = EXCLUDED.urls, updated_by = EXCLUDED.updated_by, updated_at = now()`,
    [kinds, kinds.map((k) => JSON.stringify(endpoints[k])), actor],
  );
}

/** The URLs a kind is posted to now: its PUT /notifications row, else what the configuration lists. */
export async function endpointUrls(
  db: Queryable,
  kind: NotificationKind,
  configured: Record<NotificationKind, string[]>,
): Promise<string[]> {
  const { rows } = await db.query<{ urls: string[] }>('SELECT urls FROM notification_endpoints WHERE kind = $1', [
    kind,
  ]);
  return rows[0]?.urls ?? configured[kind];
}

/** One delivery attempt, as the delivery activity records it. */
export interface DeliveryAttempt {
  deliveryId: string;
  kind: NotificationKind;
  url: string;
  attempt: number;
  status: NotificationDeliveryStatus;
  httpStatus: number | null;
  error: string | null;
}

/** Records an attempt; a retried activity (same notification and attempt) overwrites its own row. */
export async function recordDeliveryAttempt(db: Queryable, a: DeliveryAttempt): Promise<void> {
  await db.query(
    `INSERT INTO notification_deliveries (delivery_id, kind, url, attempt, status, http_status, error)
     VALUES ($1, $2, $3, $4, $5, $6, $7)
     ON CONFLICT (delivery_id, attempt) DO UPDATE SET status = EXCLUDED.status,
       http_status = EXCLUDED.http_status, error = EXCLUDED.error, created_at = now()`,
    [a.deliveryId, a.kind, a.url, a.attempt, a.status, a.httpStatus, a.error],
  );
}

export interface DeliveryRow {
  id: number;
  delivery_id: string;
  kind: NotificationKind;
  url: string;
  attempt: number;
  status: NotificationDeliveryStatus;
  http_status: number | null;
  error: string | null;
  created_at: Date;
}

export interface DeliveryQuery {
  kind?: NotificationKind;
  status?: NotificationDeliveryStatus;
  deliveryId?: string;
  /** Keyset: rows with a smaller id. */
  before?: number;
  limit: number;
}

/** Delivery attempts, newest first. */
export async function listDeliveries(db: Queryable, q: DeliveryQuery): Promise<DeliveryRow[]> {
  const { rows } = await db.query<DeliveryRow>(
    `SELECT id::int, delivery_id, kind, url, attempt, status, http_status, error, created_at
       FROM notification_deliveries
      WHERE ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR status = $2)
        AND ($3::text IS NULL OR delivery_id = $3) AND ($4::bigint IS NULL OR id < $4)
      ORDER BY id DESC LIMIT $5`,
    [q.kind ?? null, q.status ?? null, q.deliveryId ?? null, q.before ?? null, q.limit],
  );
  return rows;
}
