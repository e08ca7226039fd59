import { createApiEnv, json, type ApiEnv } from '../support/api';
import { eventually } from '../support/sink';

/**
 * Attack ("bad input gets a 4xx naming the problem"): `0000-01-01T00:00:00Z` is a valid RFC 3339 date-time, so the
 * range replay schema lets it through, but Postgres has no year 0 (22008, datetime field overflow). The API answers
 * 202 and the workflow's first activity fails on it at every attempt, retried without end: the replay never
 * finishes and never fails, and with dry_run: true the HTTP request waits on its result forever. Any operator
 * (tenant-scoped too) can leave such workflows behind, ten a minute.
 */
jest.setTimeout(120_000);

let env: ApiEnv;

beforeAll(async () => {
  env = await createApiEnv('atk3-year-zero', { ingest: false });
});

afterAll(() => env?.close());

it('a range starting in year 0 is a 400 naming body/start, not a workflow retried forever', async () => {
  const res = await env.app.inject({
    method: 'POST',
    url: '/replay/range',
    headers: { 'x-requested-by': 'test' },
    payload: { start: '0000-01-01T00:00:00Z', end: '2026-01-01T00:00:00Z', topic: env.h.topics.leads },
  });
  let stuck: { status: string; attempt: number; failure?: string } | undefined;
  if (res.statusCode === 202) {
    // Show what the accepted replay does: its activity fails on the date at every attempt, and it keeps running.
    const handle = env.client.workflow.getHandle(json<{ workflow_id: string }>(res).workflow_id);
    stuck = await eventually(async () => {
      const d = await handle.describe();
      const pending = d.raw.pendingActivities?.[0];
      const attempt = pending?.attempt ?? 0;
      return attempt >= 3
        ? { status: d.status.name, attempt, failure: pending?.lastFailure?.message ?? undefined }
        : undefined;
    }, 'the range activity to be retried');
  }
  expect({ status: res.statusCode, stuck }).toEqual({ status: 400, stuck: undefined });
  expect(json(res).message).toMatch(/body\/start/);
});
