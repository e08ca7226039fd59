import { Context } from '@temporalio/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import { heartbeatKeepaliveInterceptor } from '../../worker/heartbeat-keepalive';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The SDK's own activity Context (MockActivityEnvironment), through the interceptor: what reaches the server. */
function environment(info: Partial<Context['info']>) {
  const env = new MockActivityEnvironment(info, { interceptors: [heartbeatKeepaliveInterceptor] });
  const beats: unknown[] = [];
  env.on('heartbeat', (details: unknown) => beats.push(details));
  return { env, beats };
}

it('heartbeats the last details again while the activity runs, the previous attempt details until it has its own', async () => {
  const { env, beats } = environment({ heartbeatTimeoutMs: 300, heartbeatDetails: { cursor: 7 } });
  await env.run(async () => {
    await sleep(250); // a wait that heartbeats nothing itself (a barrier slot, an earlier send)
    Context.current().heartbeat({ cursor: 8 });
    await sleep(250);
  });
  const count = beats.length;
  await sleep(300);
  expect(beats.length).toBe(count); // nothing once the activity has ended
  const own = beats.indexOf(beats.find((b) => (b as { cursor: number }).cursor === 8));
  expect(own).toBeGreaterThanOrEqual(2);
  expect(beats.slice(0, own)).toEqual(Array(own).fill({ cursor: 7 }));
  expect(beats.slice(own).length).toBeGreaterThanOrEqual(3);
  expect(beats.slice(own)).toEqual(Array(beats.length - own).fill({ cursor: 8 }));
});

it('stops once the attempt is cancelled, and leaves activities without a heartbeat timeout alone', async () => {
  const cancelled = environment({ heartbeatTimeoutMs: 300 });
  await cancelled.env.run(async () => {
    cancelled.env.cancel();
    await sleep(400);
  });
  expect(cancelled.beats).toEqual([]);

  const untimed = environment({ heartbeatTimeoutMs: undefined });
  await untimed.env.run(() => sleep(400));
  expect(untimed.beats).toEqual([]);
});
