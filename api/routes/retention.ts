import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ANY_TOPIC, effectivePolicies, keepDays } from '../../lifecycle/retention';
import { listRetentionRows, putRetentionRows } from '../../repository/retention';
import type { Config } from '../../shared/config';
import type { Pool } from '../../shared/db';
import { httpError } from '../http-error';
import { errorResponses } from '../schemas';

/** A Kafka topic name, or '*' for every other topic. */
const TOPIC = /^(\*|[A-Za-z0-9._-]{1,249})$/;
const Days = Type.Union([Type.Integer({ minimum: 1, maximum: 36_500 }), Type.Null()]);
const Policy = Type.Object({
  topic: Type.String(),
  keep_days: Days,
  /** Where the value comes from: a PUT /retention row, JOURNAL_RETENTION, or neither (kept forever). */
  source: Type.Union([Type.Literal('api'), Type.Literal('config'), Type.Literal('default')]),
  updated_by: Type.Union([Type.String(), Type.Null()]),
  updated_at: Type.Union([Type.String(), Type.Null()]),
});
const Retention = Type.Object({ policies: Type.Array(Policy) });

/**
 * Retention per topic (docs/lifecycle.md): what the maintenance workflow archives and removes. GET lists the policy
 * of every ingested topic and of '*'; PUT sets some (null = forever), for every tenant: admin only.
 */
const retentionRoutes: FastifyPluginAsyncTypebox<{ pool: Pool; config: Pick<Config, 'journal' | 'kafka'> }> = async (
  app,
  { pool, config },
) => {
  const current = async () => {
    const rows = await listRetentionRows(pool);
    const policies = effectivePolicies(config.journal.retentionDays, rows);
    const topics = [...new Set([...config.kafka.topics, ...Object.keys(policies), ANY_TOPIC])];
    return {
      policies: topics.map((topic) => {
        const row = rows.find((r) => r.topic === topic);
        const configured = config.journal.retentionDays[topic] !== undefined;
        return {
          topic,
          keep_days: topic === ANY_TOPIC ? (policies[ANY_TOPIC] ?? null) : keepDays(policies, topic),
          source: row ? ('api' as const) : configured ? ('config' as const) : ('default' as const),
          updated_by: row?.updated_by ?? null,
          updated_at: row?.updated_at.toISOString() ?? null,
        };
      }),
    };
  };

  app.get(
    '/retention',
    {
      schema: {
        tags: ['lifecycle'],
        summary: 'Retention per topic (days; null = kept forever), and where each value comes from',
        response: { 200: Retention, ...errorResponses },
      },
    },
    current,
  );

  app.put(
    '/retention',
    {
      schema: {
        tags: ['lifecycle'],
        summary: 'Set retention for some topics ("*" = every other topic; null = forever). Admin only.',
        body: Type.Object(
          {
            policies: Type.Record(
              Type.String({ minLength: 1, maxLength: 249, pattern: '^(\\*|[A-Za-z0-9._-]+)$' }),
              Days,
              {
                minProperties: 1,
                maxProperties: 1000,
              },
            ),
          },
          { additionalProperties: false },
        ),
        response: { 200: Retention, ...errorResponses },
      },
    },
    async (request) => {
      const { policies } = request.body;
      for (const [topic, days] of Object.entries(policies)) {
        if (!TOPIC.test(topic)) throw httpError(400, `body/policies: "${topic}" is not a topic name (or "*")`);
        if (days !== null && (!Number.isInteger(days) || days < 1)) {
          throw httpError(400, `body/policies/${topic} must be a whole number of days ≥ 1, or null`);
        }
      }
      await putRetentionRows(pool, policies, request.principal.subject);
      request.log.info({ policies, by: request.principal.subject }, 'Retention changed');
      return current();
    },
  );
};

export default retentionRoutes;
