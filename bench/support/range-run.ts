import { performance } from 'node:perf_hooks';
import type { Client } from '@temporalio/client';
import type { Kafka } from 'kafkajs';
import type { RangeReplayInput, RangeReplayResult } from '../../workflows/definitions';
import { topicsSize } from './kafka';

/** Where a benchmark's range replays run: its client and task queue, the window, the target and how many events. */
export interface RangeRun {
  client: Client;
  kafka: Kafka;
  taskQueue: string;
  range: { start: string; end: string };
  target: string;
  events: number;
  pageSize: number;
}

/**
 * Runs rangeReplayWorkflow over the whole range once; events/s from start to result, the published count and the
 * target's growth checked against the events.
 */
export async function timedRangeReplay(run: RangeRun, workflowId: string, options: Partial<RangeReplayInput> = {}) {
  const { client, kafka, target, events } = run;
  const before = await topicsSize(kafka, [target]);
  const t0 = performance.now();
  const result = await client.workflow.execute('rangeReplayWorkflow', {
    taskQueue: run.taskQueue,
    workflowId,
    args: [{ ...run.range, targetTopic: target, source: 'bench', pageSize: run.pageSize, ...options }],
  });
  const seconds = (performance.now() - t0) / 1000;
  const published = (result as Extract<RangeReplayResult, { published: number }>).published;
  const onTopic = (await topicsSize(kafka, [target])) - before;
  if (published !== events || onTopic !== events)
    throw new Error(`workflow published ${published}, topic grew by ${onTopic}, expected ${events}`);
  return Math.round(events / seconds);
}
