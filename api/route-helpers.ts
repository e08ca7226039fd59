/**
 * Keyset pages: routes ask the repository for limit + 1 rows (newest first); the extra row only says that another
 * page exists, and the last id shown is the cursor for it.
 */
export function keysetPage<T extends { id: number }>(
  rows: T[],
  limit: number,
): { items: T[]; next_cursor: number | null } {
  const items = rows.slice(0, limit);
  return { items, next_cursor: rows.length > limit ? items[items.length - 1].id : null };
}

/** The promise's value, or undefined when it has not settled within `ms` (the caller answers 202 then). */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
