import type { Queryable } from './queryable';

/** A secret the service generated for itself (migration 007), by name; undefined if there is none. */
export async function getServiceKey(db: Queryable, name: string): Promise<Buffer | undefined> {
  const { rows } = await db.query<{ secret: Buffer }>('SELECT secret FROM service_keys WHERE name = $1', [name]);
  return rows[0]?.secret;
}

/** The secret of that name, made at random first when there is none yet (concurrent callers all get the same one). */
export async function ensureServiceKey(db: Queryable, name: string): Promise<Buffer> {
  await db.query(
    `INSERT INTO service_keys (name, secret)
     VALUES ($1, decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'))
     ON CONFLICT (name) DO NOTHING`,
    [name],
  );
  return (await getServiceKey(db, name))!;
}
