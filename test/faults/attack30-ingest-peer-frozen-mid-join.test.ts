import type { ChildProcess } from 'node:child_process';
import fc from 'fast-check';
import { exited, spawnIngest, untilPrinted } from '../support/ingest-process';
import { createSinkHarness, type SinkHarness } from '../support/sink';
import { steadyTraffic } from '../support/traffic';
import { uniqueSuffix } from '../support/env';

/**
 * attack30 (area B): three `ingest` processes in one group under steady traffic; a rebalance is caused (a fourth
 * member starts, or one is stopped by SIGTERM) and, during its join, one of the other members is frozen (SIGSTOP) for
 * 20-35 s, then either thawed (SIGCONT) or killed (SIGKILL).
 *
 * Invariants (brief B; docs/integrity.md "Shutdown", "Ingest"): every produced record is journaled exactly once
 * (distinct coordinates, distinct content), none in the DLQ; no partition stays stuck: everything is journaled within
 * 2 x session timeout + rebalance timeout (kafkajs's 60 s) of the traffic's end; the survivors never exit.
 */
jest.setTimeout(290_000);

const SESSION_TIMEOUT_MS = 10_000;
const REBALANCE_TIMEOUT_MS = 60_000;
const ROUNDS = Number(process.env.A30_ROUNDS ?? 1);
const PER_SEND = 50;
let h: SinkHarness;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  h = await createSinkHarness('a30frozenjoin', { KAFKA_SESSION_TIMEOUT_MS: String(SESSION_TIMEOUT_MS) });
}, 60_000);
afterAll(async () => {
  for (const child of children) {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
  }
  await h?.close();
});

function member(): ChildProcess {
  const child = spawnIngest({
    DATABASE_URL: h.config.databaseUrl,
    KAFKA_TOPICS: h.config.kafka.topics.join(','),
    KAFKA_GROUP_ID: h.config.kafka.groupId,
    KAFKA_SESSION_TIMEOUT_MS: String(SESSION_TIMEOUT_MS),
    SHUTDOWN_TIMEOUT: '10s',
    LOG_LEVEL: 'info',
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

const alive = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;

it('a peer frozen mid-join, then thawed or killed: every record once, no partition stuck, survivors keep running', async () => {
  const plans = fc.sample(
    fc.record({
      trigger: fc.constantFrom('join' as const, 'leave' as const),
      freezeAfterMs: fc.integer({ min: 0, max: 2500 }),
      frozenMs: fc.integer({ min: 20_000, max: 35_000 }),
      end: fc.constantFrom('SIGCONT' as const, 'SIGKILL' as const),
    }),
    { numRuns: ROUNDS },
  );
  const run = uniqueSuffix();
  const traffic = steadyTraffic(h, PER_SEND, 150, (i, j) => ({ tenant_id: 'acme', uid: `${run}-${i}-${j}` }));
  const members = [member(), member(), member()];
  for (const m of members) await untilPrinted(m, 'Joined consumer group', 90_000);
  const outcomes: unknown[] = [];
  let produced = 0;
  try {
    for (const [r, plan] of plans.entries()) {
      let stopped: ChildProcess | undefined;
      // Keep at least two members, so one not frozen and not killed is always left.
      if (plan.trigger === 'leave' && members.length < 3) plan.trigger = 'join';
      if (plan.trigger === 'join') {
        const joiner = member();
        members.push(joiner);
        await untilPrinted(joiner, 'Metrics listening', 60_000);
      } else {
        stopped = members.shift()!;
        stopped.kill('SIGTERM');
      }
      await new Promise((res) => setTimeout(res, plan.freezeAfterMs));
      const victim = members[Math.floor(Math.random() * members.length)];
      victim.kill('SIGSTOP');
      await new Promise((res) => setTimeout(res, plan.frozenMs));
      if (plan.end === 'SIGKILL' && members.length < 2) plan.end = 'SIGCONT';
      victim.kill(plan.end);
      if (plan.end === 'SIGKILL') members.splice(members.indexOf(victim), 1);
      const stopCode = stopped
        ? await Promise.race([exited(stopped), new Promise((res) => setTimeout(() => res('running'), 15_000))])
        : undefined;
      outcomes.push({ round: r, plan, stopCode });
    }
  } finally {
    produced = await traffic.stop();
  }
  const endedAt = Date.now();
  const bound = 2 * SESSION_TIMEOUT_MS + REBALANCE_TIMEOUT_MS;
  const counts = async () => {
    const { rows } = await h.pool.query<{ total: string; coords: string; uids: string }>(
      `SELECT count(*) AS total, count(DISTINCT (topic, kafka_partition, kafka_offset)) AS coords,
              count(DISTINCT payload->>'uid') AS uids
         FROM event_journal WHERE payload->>'uid' LIKE $1`,
      [`${run}-%`],
    );
    return { total: Number(rows[0].total), coords: Number(rows[0].coords), uids: Number(rows[0].uids) };
  };
  let seen = await counts();
  while (seen.total < produced && Date.now() - endedAt < bound) {
    await new Promise((res) => setTimeout(res, 1000));
    seen = await counts();
  }
  const catchUpMs = Date.now() - endedAt;
  await new Promise((res) => setTimeout(res, 2000));
  seen = await counts();
  const survivors = members.map((m) => ({ pid: m.pid, alive: alive(m), exit: m.exitCode }));
  const summary = { produced, ...seen, dlq: await h.dlqCount(), catchUpMs, survivors };
  console.log(JSON.stringify({ outcomes, summary }));
  for (const m of members) m.kill('SIGTERM');
  await Promise.all(members.map((m) => Promise.race([exited(m), new Promise((res) => setTimeout(res, 15_000))])));
  expect({
    ...seen,
    dlq: summary.dlq,
    inTime: catchUpMs < bound,
    survivorsAlive: survivors.every((s) => s.alive),
  }).toEqual({
    total: produced,
    coords: produced,
    uids: produced,
    dlq: 0,
    inTime: true,
    survivorsAlive: true,
  });
});

it('traffic ends while a peer is frozen mid-join: the others journal everything while it is still frozen, in time', async () => {
  const plan = fc.sample(
    fc.record({
      trigger: fc.constantFrom('join' as const, 'leave' as const),
      freezeAfterMs: fc.integer({ min: 0, max: 2500 }),
      end: fc.constantFrom('SIGCONT' as const, 'SIGKILL' as const),
    }),
    { numRuns: 1 },
  )[0];
  const run = uniqueSuffix();
  const traffic = steadyTraffic(h, PER_SEND, 150, (i, j) => ({ tenant_id: 'acme', uid: `${run}-${i}-${j}` }));
  const members = [member(), member(), member()];
  for (const m of members) await untilPrinted(m, 'Joined consumer group', 90_000);
  await new Promise((res) => setTimeout(res, 2000));
  if (plan.trigger === 'join') {
    const joiner = member();
    members.push(joiner);
    await untilPrinted(joiner, 'Metrics listening', 60_000);
  } else {
    members.shift()!.kill('SIGTERM');
  }
  await new Promise((res) => setTimeout(res, plan.freezeAfterMs));
  const victim = members[Math.floor(Math.random() * members.length)];
  victim.kill('SIGSTOP');
  const frozenAt = Date.now();
  await new Promise((res) => setTimeout(res, 1000));
  const produced = await traffic.stop();
  const bound = 2 * SESSION_TIMEOUT_MS + REBALANCE_TIMEOUT_MS;
  const count = async () =>
    Number(
      (
        await h.pool.query<{ n: string }>(`SELECT count(*) AS n FROM event_journal WHERE payload->>'uid' LIKE $1`, [
          `${run}-%`,
        ])
      ).rows[0].n,
    );
  let seen = await count();
  while (seen < produced && Date.now() - frozenAt < bound) {
    await new Promise((res) => setTimeout(res, 1000));
    seen = await count();
  }
  const catchUpMs = Date.now() - frozenAt;
  victim.kill(plan.end);
  await new Promise((res) => setTimeout(res, 3000));
  const { rows } = await h.pool.query<{ total: string; coords: string; uids: string }>(
    `SELECT count(*) AS total, count(DISTINCT (topic, kafka_partition, kafka_offset)) AS coords,
            count(DISTINCT payload->>'uid') AS uids
       FROM event_journal WHERE payload->>'uid' LIKE $1`,
    [`${run}-%`],
  );
  const others = members.filter((m) => m !== victim);
  const summary = {
    plan,
    produced,
    journaledWhileFrozen: seen,
    total: Number(rows[0].total),
    coords: Number(rows[0].coords),
    uids: Number(rows[0].uids),
    catchUpMs,
    othersAlive: others.every(alive),
  };
  console.log(JSON.stringify(summary));
  for (const m of members) m.kill('SIGTERM');
  await Promise.all(members.map((m) => Promise.race([exited(m), new Promise((res) => setTimeout(res, 15_000))])));
  expect({
    journaledWhileFrozen: seen,
    total: summary.total,
    coords: summary.coords,
    uids: summary.uids,
    othersAlive: summary.othersAlive,
  }).toEqual({ journaledWhileFrozen: produced, total: produced, coords: produced, uids: produced, othersAlive: true });
});
