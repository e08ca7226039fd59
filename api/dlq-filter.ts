import { Type, type Static, type TObject } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import { DLQ_STATUSES, type DlqStatus } from '../journal/kinds';
import type { DlqFilter } from '../repository/event-dlq';
import { StringEnum } from './schemas';
import { scopedTenant } from './tenant-scope';

/**
 * What selects dead letters, in GET /dlq's query and in a repair's `filter`: a new filter is one field here, one line
 * in dlqFilterOf and one clause in repository/event-dlq.ts dlqFilterClauses.
 */
export const DlqFilterQuery = {
  status: Type.Optional(StringEnum(DLQ_STATUSES)),
  topic: Type.Optional(Type.String({ minLength: 1, maxLength: 249 })),
  tenant_id: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
};
/** The filter as a request carries it (the status validated against DLQ_STATUSES by the schema). */
export type DlqFilterParams = Omit<Static<TObject<typeof DlqFilterQuery>>, 'status'> & { status?: unknown };

/** The repository filter of a request: a tenant-scoped token pins the tenant (asking for another is a 403). */
export function dlqFilterOf(request: FastifyRequest, q: DlqFilterParams): DlqFilter {
  return { status: q.status as DlqStatus | undefined, topic: q.topic, tenantId: scopedTenant(request, q.tenant_id) };
}
