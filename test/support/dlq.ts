import { classified } from '../../journal/error-class';
import { insertDlqEntries, type ClassifiedDlqEntry, type NewDlqEntry } from '../../repository/event-dlq';
import type { Queryable } from '../../repository/queryable';

/** A dead letter with its error class, defaults for everything not given (no tenant, a random offset). */
export function dlqEntry(topic: string, over: Partial<NewDlqEntry>): ClassifiedDlqEntry {
  return classified({
    topic,
    tenantId: null,
    payloadJson: null,
    rawValue: null,
    rawBytes: null,
    error: 'rejected',
    reason: 'invalid_json',
    partition: 0,
    offset: String(Math.floor(Math.random() * 1e12)),
    key: null,
    keyBytes: null,
    headersJson: null,
    timestamp: null,
    contentHash: null,
    ...over,
  });
}

/** Dead letters of three classes, as ingest words them, `n` of each kind asked for; returns their ids by kind. */
export async function seedDeadLetters(
  db: Queryable,
  topic: string,
  n: { fixable?: number; noTenant?: number; badJson?: number; tenant?: string },
): Promise<{ fixable: number[]; noTenant: number[]; badJson: number[] }> {
  const tenant = n.tenant ?? 'acme';
  const entry = (over: Partial<NewDlqEntry>) => dlqEntry(topic, { tenantId: tenant, ...over });
  const kinds = {
    // The journal refused them once (a CHECK since dropped): a retry journals them now.
    fixable: (i: number) =>
      entry({
        reason: 'db_error',
        payloadJson: JSON.stringify({ tenant_id: tenant, lead_id: i }),
        error:
          `Insert into event_journal failed: new row for relation "event_journal_p2026_0${(i % 9) + 1}" violates ` +
          'check constraint "bar_block" (SQLSTATE 23514)',
      }),
    // No tenant anywhere: a retry fails again.
    noTenant: (i: number) =>
      entry({
        reason: 'missing_tenant',
        tenantId: null,
        payloadJson: JSON.stringify({ lead_id: i }),
        error: 'Event has no tenant: expected a non-empty tenant_id, tenantId, TenantId field or an x-tenant-id header',
      }),
    badJson: (i: number) =>
      entry({
        rawValue: `{"lead_id": ${i},`,
        error: `Record value is not valid JSON: Unexpected end of JSON input at position ${12 + i}`,
      }),
  };
  const ids = { fixable: [] as number[], noTenant: [] as number[], badJson: [] as number[] };
  for (const kind of ['fixable', 'noTenant', 'badJson'] as const) {
    const entries = Array.from({ length: n[kind] ?? 0 }, (_, i) => kinds[kind](i));
    const rows = await insertDlqEntries(db, entries);
    ids[kind] = rows.map((r) => Number(r.id)).sort((a, b) => a - b);
  }
  return ids;
}
