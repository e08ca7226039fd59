import type { Queryable } from './queryable';

/** A secret the service generated for itself (migration 007), by name; undefined if there is none. */
export async function getServiceKey(db: Queryable, name: string): Promise<Buffer | undefined> {
  const { rows } = await db.query<{ secret: Buffer }>('SELECT secret FROM service_keys WHERE name = $1', [name]);
  return rows[0]?.secret;
}
