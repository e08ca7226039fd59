/** Temporal's wrappers around what actually failed: their own message only says that an activity or a child failed. */
const WRAPPERS = ['ActivityFailure', 'ChildWorkflowFailure'];

/**
 * What a workflow's step failed with, for its audit row: the message of the failure an activity threw (e.g. the
 * SQLSTATE and Postgres's message of an UnprocessableData), past the activity and child workflow failures around it
 * (a sharded range replay's coordinator sees a child's failure, whose cause is an activity's).
 */
export function failureMessage(err: unknown): string {
  let failure = err as { name?: string; message?: string; cause?: unknown };
  for (let depth = 0; depth < 5 && WRAPPERS.includes(failure.name ?? '') && failure.cause; depth++) {
    failure = failure.cause as typeof failure;
  }
  return failure.message ?? String(err);
}
