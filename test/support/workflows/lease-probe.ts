import { proxyActivities } from '@temporalio/workflow';

/** The activity of test/integration/attempt-lease.test.ts: a heartbeat timeout of 10 s, a retry 1 s after a timeout. */
const { leaseProbe } = proxyActivities<{ leaseProbe(): Promise<unknown> }>({
  startToCloseTimeout: '1m',
  heartbeatTimeout: '10s',
  retry: { initialInterval: '1s', maximumAttempts: 3 },
});

/** One call of leaseProbe, through as many attempts as it takes. */
export async function leaseProbeWorkflow(): Promise<unknown> {
  return leaseProbe();
}
