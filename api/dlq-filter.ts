import { Type, type Static, type TObject } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import { DLQ_STATUSES, type DlqStatus } from '../journal/kinds';
import type { DlqFilter } from '../repository/event-dlq';
import { StringEnum } from './schemas';
import { scopedTenant } from './tenant-scope';

/**
 * What selects dead letters: GET /dlq's query, GET /dlq/groups', a bulk action's and a repair's `filter`. A new filter
 * is one field here, one line in dlqFilterOf and dlqFilterParams, and one clause in repository/event-dlq.ts
 * dlqFilterClauses.
 */
export const DlqFilterFields = {
  status: Type.Optional(StringEnum(DLQ_STATUSES)),
  topic: Type.Optional(Type.String({ minLength: 1, maxLength: 249 })),
  tenant_id: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  error_class: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  // A UTC day, as GET /dlq/groups names it; year 0 is not a date Postgres knows.
  day: Type.Optional(Type.String({ format: 'date', pattern: '^(?!0000)[0-9]{4}-[0-9]{2}-[0-9]{2}$' })),
};
// The type provider types StringEnum's value as unknown; the schema has checked it against DLQ_STATUSES.
export type DlqFilterParams = Omit<Static<TObject<typeof DlqFilterFields>>, 'status'> & { status?: unknown };

/** The repository filter of a request: a tenant-scoped token pins its tenant (asking for another is a 403). */
export function dlqFilterOf(request: FastifyRequest, q: DlqFilterParams): DlqFilter {
  return {
    status: q.status as DlqStatus | undefined,
    topic: q.topic,
    tenantId: scopedTenant(request, q.tenant_id),
    errorClass: q.error_class,
    day: q.day,
  };
}

/** A filter as the API names its fields (snake_case), without the fields not set: what a dry run says it counted. */
export function dlqFilterParams(f: DlqFilter): Record<string, string> {
  const params = { status: f.status, topic: f.topic, tenant_id: f.tenantId, error_class: f.errorClass, day: f.day };
  return Object.fromEntries(Object.entries(params).filter((e): e is [string, string] => e[1] !== undefined));
}
