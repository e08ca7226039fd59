import { ensureDlqRetrySchedule } from '../../worker/dlq-schedule';
import { createApiEnv, json, leaksInternals, type ApiEnv } from '../support/api';
import { uniqueSuffix } from '../support/env';
import { deleteSchedule } from '../support/temporal';

/**
 * Attack ("bad input gets a 4xx naming the problem, never a 5xx"): PATCH /dlq/retry-schedule checks that the interval
 * matches ^\d+(ms|s|m|h|d)$ and is at least 1 s, but not that Temporal can hold it: Temporal refuses durations over
 * 10,000 years, and the API turns that into a 500. The schedule is left as it was; the caller learns nothing.
 */
jest.setTimeout(120_000);

let env: ApiEnv;
const SCHEDULE_ID = `atk3-interval-${uniqueSuffix()}`;

beforeAll(async () => {
  env = await createApiEnv('atk3-interval', {
    ingest: false,
    worker: false,
    env: { DLQ_RETRY_SCHEDULE_ID: SCHEDULE_ID, DLQ_RETRY_INTERVAL: '5m' },
  });
  await ensureDlqRetrySchedule(env.client, env.h.config, env.h.log);
});

afterAll(async () => {
  if (!env) return;
  await deleteSchedule(env.h.config.temporal.address, SCHEDULE_ID);
  await env.close();
});

it.each(['999999999d', '99999999999999999999d'])(
  'an interval Temporal cannot hold (%s) is a 400 naming body/interval, not a 500',
  async (interval) => {
    const res = await env.app.inject({
      method: 'PATCH',
      url: '/dlq/retry-schedule',
      headers: { 'x-requested-by': 'test' },
      payload: { interval },
    });
    expect(leaksInternals(res.payload)).toBe(false);
    expect({ status: res.statusCode, message: json(res).message }).toEqual({
      status: 400,
      message: expect.stringMatching(/interval/),
    });
  },
);
