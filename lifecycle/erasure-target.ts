import { createHmac } from 'node:crypto';
import type { ArchiveRow } from '../archive';

/**
 * What an erasure selects (docs/lifecycle.md, "Erasure"): every row of a tenant (offboarding), or every row of a data
 * subject, i.e. whose payload's top-level `field` is `value` as text (a number 42 is the subject "42").
 */
export type ErasureTarget = { kind: 'tenant'; value: string } | { kind: 'subject'; field: string; value: string };

/**
 * The subject as the audit and the workflow know it: HMAC-SHA256 of the target under the installation's erasure key
 * (service_keys 'erasure'). Equal targets give equal hashes on one installation, so erasures of one person can be
 * found again; without the key nobody can test a guessed email or phone number against it.
 */
export function subjectHash(key: Buffer, target: ErasureTarget): string {
  const parts = target.kind === 'tenant' ? ['tenant', target.value] : ['subject', target.field, target.value];
  return createHmac('sha256', key).update(JSON.stringify(parts)).digest('hex');
}

/** The target without its value: what the audit's request and the workflow's input may hold. */
export function describeTarget(target: ErasureTarget): { target: ErasureTarget['kind']; field?: string } {
  return target.kind === 'tenant' ? { target: 'tenant' } : { target: 'subject', field: target.field };
}

const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * A cheap test every archived row that a subject erasure must drop passes (a necessary condition, not the decision):
 * its payload text holds the value as a whole string or number somewhere, or its key or a header value is the value.
 * Archived payloads are jsonb's own text, whose string escapes are JSON.stringify's. Rows that pass are decided by
 * Postgres with the same predicate as the journal's (repository/erasure-match.ts), so the archive and the journal
 * agree on what matches; most rows never get that far.
 */
export function archiveCandidate(target: ErasureTarget): (row: ArchiveRow) => boolean {
  if (target.kind === 'tenant') return (row) => row.tenant_id === target.value;
  const escaped = escapeRegExp(JSON.stringify(target.value).slice(1, -1));
  const inPayload = new RegExp(`[:,[]\\s*(?:"${escaped}"|${escaped}\\s*[,}\\]])`);
  const base64 = Buffer.from(target.value, 'utf8').toString('base64');
  return (row) =>
    row.kafka_key === target.value ||
    row.kafka_key_bytes === base64 ||
    (row.kafka_headers !== null && row.kafka_headers.includes(`"${base64}"`)) ||
    inPayload.test(row.payload);
}

/** What a read or replay of an erased journal id answers (410, or the EventErased failure of a replay). */
export const erasedEventMessage = (id: number, erasureId: string) => `Event ${id} was erased by erasure ${erasureId}`;
