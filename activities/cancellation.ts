import { Context } from '@temporalio/activity';

/** The cancellation of the activity running the caller, if any (a worker's stop, the workflow's cancel). */
export function activityCancellation(): AbortSignal | undefined {
  try {
    return Context.current().cancellationSignal;
  } catch {
    return undefined; // not called from an activity
  }
}
