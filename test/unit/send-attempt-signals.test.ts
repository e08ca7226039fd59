import { sendAttemptSignal, withSendAttempt, withSendSignal } from '../../shared/kafka';

/**
 * A send bound to an attempt by two signals (the interceptor's, which the lease aborts when the server has ended the
 * attempt, and the activity's own cancellation that publishMessages passes) is bound by both: the inner one used to
 * replace the outer, so a send waiting for a producer slot heard of the server's end only once the SDK cancelled.
 */
it('binds a send to every signal of the attempts it is made under', async () => {
  const cases = await Promise.all(
    (['outer', 'inner'] as const).map((which) => {
      const outer = new AbortController();
      const inner = new AbortController();
      return withSendAttempt({ signal: outer.signal }, () =>
        withSendSignal(inner.signal, async () => {
          const bound = sendAttemptSignal()!;
          (which === 'outer' ? outer : inner).abort(new Error(`${which} aborted`));
          return { which, aborted: bound.aborted, reason: (bound.reason as Error).message };
        }),
      );
    }),
  );
  expect(cases).toEqual([
    { which: 'outer', aborted: true, reason: 'outer aborted' },
    { which: 'inner', aborted: true, reason: 'inner aborted' },
  ]);
  // One signal: the same one, not a copy.
  const only = new AbortController();
  await expect(withSendAttempt({ signal: only.signal }, async () => sendAttemptSignal() === only.signal)).resolves.toBe(
    true,
  );
});
