/** Marks a read started ahead as handled, so that leaving it behind (failed send, cancellation) is not an error. */
export function prefetch<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}
