/** Marks an error made by httpError: its message is written for the client, whatever its status. */
const FOR_CLIENT = Symbol('for client');

/**
 * An error the error handler turns into a JSON answer with this status and message, and `fields` beside them (a
 * workflow id to look up).
 */
export function httpError(
  statusCode: number,
  message: string,
  fields: Record<string, unknown> = {},
): Error & { statusCode: number } {
  return Object.assign(new Error(message), { statusCode, [FOR_CLIENT]: fields });
}

/** The fields beside the message of an error made by httpError, or undefined for any other error. */
export function clientFields(err: unknown): Record<string, unknown> | undefined {
  return (err as { [FOR_CLIENT]?: Record<string, unknown> } | null)?.[FOR_CLIENT];
}
