import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import {
  NOTIFICATION_DELIVERY_STATUSES,
  NOTIFICATION_KINDS,
  type NotificationDeliveryStatus,
  type NotificationKind,
} from '../../journal/kinds';
import { listDeliveries, listEndpointRows, putEndpointRows } from '../../repository/notifications';
import { isWebhookUrl, type Config } from '../../shared/config';
import type { Pool } from '../../shared/db';
import { httpError } from '../http-error';
import { errorResponses, Id, NullableInteger, NullableString, StringEnum, Timestamp } from '../schemas';

const MAX_URLS = 10;
const NO_NUL = '^[^\\u0000]*$';
const Url = Type.String({ minLength: 1, maxLength: 2000, pattern: NO_NUL });
/** URLs by kind, some kinds only: each listed kind is set, the others keep theirs. */
const EndpointUrls = Type.Partial(
  Type.Record(Type.Union(NOTIFICATION_KINDS.map((k) => Type.Literal(k))), Type.Array(Url, { maxItems: MAX_URLS })),
  { additionalProperties: false, minProperties: 1 },
);
const Endpoint = Type.Object({
  kind: StringEnum(NOTIFICATION_KINDS),
  urls: Type.Array(Type.String()),
  /** Where the URLs come from: a PUT /notifications row, NOTIFY_WEBHOOKS, or neither (posted nowhere). */
  source: Type.Union([Type.Literal('api'), Type.Literal('config'), Type.Literal('default')]),
  updated_by: NullableString,
  updated_at: Type.Union([Type.String(), Type.Null()]),
});
const Settings = Type.Object({
  /** Whether NOTIFY_SIGNING_SECRET is set (the secret itself is never shown). Without it nothing is sent. */
  signing_secret_set: Type.Boolean(),
  max_attempts: Type.Integer(),
  backoff_ms: Type.Integer(),
  timeout_ms: Type.Integer(),
  dlq_growth: Type.Object({
    threshold: Type.Integer(),
    window_seconds: Type.Number(),
    interval_seconds: Type.Number(),
  }),
  endpoints: Type.Array(Endpoint),
});
const Delivery = Type.Object({
  id: Type.Integer(),
  delivery_id: Type.String(),
  kind: StringEnum(NOTIFICATION_KINDS),
  url: Type.String(),
  attempt: Type.Integer(),
  status: StringEnum(NOTIFICATION_DELIVERY_STATUSES),
  http_status: NullableInteger,
  error: NullableString,
  created_at: Timestamp,
});

/**
 * Operational webhooks (docs/notifications.md): GET shows where each kind is posted and how, PUT sets the URLs of
 * some kinds (overriding NOTIFY_WEBHOOKS; [] = nowhere), GET /notifications/deliveries lists every attempt. The URLs
 * may carry tokens of the receiving systems: admin only.
 */
const notificationRoutes: FastifyPluginAsyncTypebox<{ pool: Pool; config: Pick<Config, 'notifications'> }> = async (
  app,
  { pool, config },
) => {
  const settings = config.notifications;
  const current = async () => {
    const rows = await listEndpointRows(pool);
    return {
      signing_secret_set: settings.signingSecret !== undefined,
      max_attempts: settings.maxAttempts,
      backoff_ms: settings.backoffMs,
      timeout_ms: settings.timeoutMs,
      dlq_growth: {
        threshold: settings.dlqGrowth.threshold,
        window_seconds: settings.dlqGrowth.windowMs / 1000,
        interval_seconds: settings.dlqGrowth.intervalMs / 1000,
      },
      endpoints: NOTIFICATION_KINDS.map((kind) => {
        const row = rows.find((r) => r.kind === kind);
        const configured = settings.urls[kind];
        return {
          kind,
          urls: row?.urls ?? configured,
          source: row ? ('api' as const) : configured.length > 0 ? ('config' as const) : ('default' as const),
          updated_by: row?.updated_by ?? null,
          updated_at: row?.updated_at.toISOString() ?? null,
        };
      }),
    };
  };

  app.get(
    '/notifications',
    {
      schema: {
        tags: ['notifications'],
        summary: 'Where each kind of notification is posted, and the delivery settings',
        response: { 200: Settings, ...errorResponses },
      },
    },
    current,
  );

  app.put(
    '/notifications',
    {
      schema: {
        tags: ['notifications'],
        summary: 'Set the URLs of some kinds ([] = posted nowhere); the others keep theirs. Admin only.',
        body: Type.Object({ endpoints: EndpointUrls }, { additionalProperties: false }),
        response: { 200: Settings, ...errorResponses },
      },
    },
    async (request) => {
      const endpoints: Partial<Record<NotificationKind, string[]>> = { ...request.body.endpoints };
      if (!settings.signingSecret) {
        throw httpError(400, 'NOTIFY_SIGNING_SECRET is not set: notifications would be sent unsigned; set it first');
      }
      for (const [kind, urls] of Object.entries(endpoints)) {
        for (const url of urls ?? []) {
          if (!isWebhookUrl(url)) throw httpError(400, `body/endpoints/${kind}: "${url}" is not an http(s) URL`);
        }
        endpoints[kind as NotificationKind] = [...new Set(urls)];
      }
      await putEndpointRows(pool, endpoints, request.principal.subject);
      request.log.info({ kinds: Object.keys(endpoints), by: request.principal.subject }, 'Notification URLs changed');
      return current();
    },
  );

  app.get(
    '/notifications/deliveries',
    {
      schema: {
        tags: ['notifications'],
        summary: 'Delivery attempts, newest first (status, HTTP code, attempt, error); before = the next page',
        querystring: Type.Object(
          {
            kind: Type.Optional(StringEnum(NOTIFICATION_KINDS)),
            status: Type.Optional(StringEnum(NOTIFICATION_DELIVERY_STATUSES)),
            delivery_id: Type.Optional(Type.String({ minLength: 1, maxLength: 1000, pattern: NO_NUL })),
            before: Type.Optional(Id),
            limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({ deliveries: Type.Array(Delivery), next_before: NullableInteger }),
          ...errorResponses,
        },
      },
    },
    async (request) => {
      const q = request.query;
      const rows = await listDeliveries(pool, {
        kind: q.kind as NotificationKind | undefined,
        status: q.status as NotificationDeliveryStatus | undefined,
        deliveryId: q.delivery_id,
        before: q.before,
        limit: q.limit,
      });
      return { deliveries: rows, next_before: rows.length === q.limit ? rows[rows.length - 1].id : null };
    },
  );
};

export default notificationRoutes;
