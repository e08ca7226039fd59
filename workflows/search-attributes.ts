import { defineSearchAttributeKey, SearchAttributeType, type SearchAttributePair } from '@temporalio/common';
import type { ReplayKind } from '../journal/kinds';

/** Custom search attributes registered on the dev server (scripts/stack.sh) and set on every replay workflow. */
export const CrmTenantId = defineSearchAttributeKey('CrmTenantId', SearchAttributeType.KEYWORD);
export const CrmTopic = defineSearchAttributeKey('CrmTopic', SearchAttributeType.KEYWORD);
export const CrmReplaySource = defineSearchAttributeKey('CrmReplaySource', SearchAttributeType.KEYWORD);
export const CrmReplayKind = defineSearchAttributeKey('CrmReplayKind', SearchAttributeType.KEYWORD);
export const CrmEventId = defineSearchAttributeKey('CrmEventId', SearchAttributeType.KEYWORD);

export interface ReplayAttributes {
  kind: ReplayKind;
  source: string;
  tenantId?: string;
  topic?: string;
  eventId?: number;
}

/** The search attributes of one replay workflow; absent facts are left out rather than set empty. */
export function replaySearchAttributes(a: ReplayAttributes): SearchAttributePair[] {
  const pairs: SearchAttributePair[] = [
    { key: CrmReplayKind, value: a.kind },
    { key: CrmReplaySource, value: a.source },
  ];
  if (a.tenantId) pairs.push({ key: CrmTenantId, value: a.tenantId });
  if (a.topic) pairs.push({ key: CrmTopic, value: a.topic });
  if (a.eventId !== undefined) pairs.push({ key: CrmEventId, value: String(a.eventId) });
  return pairs;
}
