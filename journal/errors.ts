/** Postgres cannot take the batch right now (down, restarting, out of connections): retry, commit nothing. */
export class JournalUnavailableError extends Error {
  override readonly name = 'JournalUnavailableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
