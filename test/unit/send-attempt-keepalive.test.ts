import { Context } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { keepingAttemptAlive } from '../../shared/kafka';
import { sendAttemptInterceptor } from '../../worker/send-attempt';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The SDK's own activity Context (MockActivityEnvironment), through the interceptor: what reaches the server. */
function environment(info: Partial<Context['info']>) {
  const env = new MockActivityEnvironment(info, { interceptors: [sendAttemptInterceptor] });
  const beats: unknown[] = [];
  env.on('heartbeat', (details: unknown) => beats.push(details));
  return { env, beats };
}

it("keeps a page's send alive with the last details, the previous attempt's until it has its own", async () => {
  const { env, beats } = environment({ heartbeatTimeoutMs: 300, heartbeatDetails: { cursor: 7 } });
  let outside = 0;
  await env.run(async () => {
    await sleep(400); // outside a send: the heartbeat timeout keeps finding a stuck attempt
    outside = beats.length;
    await keepingAttemptAlive(async () => {
      await sleep(250); // a wait that heartbeats nothing itself (a barrier slot, an earlier send)
      Context.current().heartbeat({ cursor: 8 });
      await sleep(250);
    });
    await sleep(300);
  });
  expect(outside).toBe(0);
  const own = beats.findIndex((b) => (b as { cursor: number }).cursor === 8);
  expect(own).toBeGreaterThanOrEqual(2);
  expect(beats.slice(0, own)).toEqual(Array(own).fill({ cursor: 7 }));
  // The activity's own heartbeat, then the keepalive's of it while the send lasts, and none after it.
  expect(beats.length - own).toBeGreaterThanOrEqual(3);
  expect(beats.length - own).toBeLessThanOrEqual(4);
  expect(beats.slice(own)).toEqual(Array(beats.length - own).fill({ cursor: 8 }));
});

it('stops once the attempt is cancelled, and leaves activities without a heartbeat timeout alone', async () => {
  const cancelled = environment({ heartbeatTimeoutMs: 300 });
  await cancelled.env.run(() =>
    keepingAttemptAlive(async () => {
      cancelled.env.cancel();
      await sleep(400);
    }),
  );
  expect(cancelled.beats).toEqual([]);

  const untimed = environment({ heartbeatTimeoutMs: undefined });
  await untimed.env.run(() => keepingAttemptAlive(() => sleep(400)));
  expect(untimed.beats).toEqual([]);
});
