import type { QueryResult } from 'pg';
import type { Answer } from './answering-pool';

interface Row {
  workflowId: string;
  fence: number;
  page: number;
  details: Record<string, unknown>;
  closed: boolean;
  /** send_progress_sent's rows of the activity: page, kind (sent, or refused of a kind) and ids. */
  sent: { page: number; kind: string; ids: number[] }[];
}

const result = (rows: unknown[], rowCount: number) => ({ rows, rowCount }) as unknown as QueryResult;

/**
 * send_progress and send_progress_sent (sql/023, 024) in memory, for unit tests under fake timers: answers the statements
 * of repository/send-progress.ts as Postgres does (a claim refused once a later attempt or activity claimed, closing
 * the workflow's earlier rows; a page write or ids only while the row is the attempt's; the sweep by age deletes
 * nothing here), and every other statement with undefined (answeringPool's default). `writes` lists each statement
 * that claims or writes, as it was answered.
 */
export function sendProgressTable() {
  const rows = new Map<string, Row>();
  const writes: string[] = [];
  const answer: Answer = (text, values) => {
    const id = `${values[0]}/${values[1]}`;
    const row = rows.get(id);
    if (text.startsWith('WITH later AS')) {
      const [, , workflowId, fence] = values as [string, string, string, number];
      const later = [...rows].some(([other, r]) => r.workflowId === workflowId && r.fence > fence && other !== id);
      const ok = !later && (!row || (!row.closed && row.fence <= fence));
      writes.push(`claim${ok ? '' : ' refused'}`);
      if (!ok) return result([], 0);
      if (row) row.fence = fence;
      else rows.set(id, { workflowId, fence, page: -1, details: {}, closed: false, sent: [] });
      for (const [other, r] of rows) {
        if (r.workflowId === workflowId && r.fence < fence && other !== id && !r.closed) {
          Object.assign(r, { closed: true, details: {}, sent: [] });
        }
      }
      const claimed = rows.get(id)!;
      return result([{ page: claimed.page, details: structuredClone(claimed.details) }], 1);
    }
    if (text.startsWith('SELECT coalesce(jsonb_object_agg')) {
      // The claim's ids, by decision (sent, or refused of a kind), read after it.
      const page = values[2] as number;
      const ids: Record<string, number[]> = {};
      for (const { kind, ids: list } of row?.sent.filter((x) => x.page === page) ?? []) {
        ids[kind] = [...new Set([...(ids[kind] ?? []), ...list])].sort((a, b) => a - b);
      }
      return result([{ ids }], 1);
    }
    if (text.startsWith('WITH written AS')) {
      const [, , fence, page, details, kinds, ids] = values as [
        string,
        string,
        number,
        number,
        string,
        string[],
        number[],
      ];
      const ok = !!row && row.fence === fence && !row.closed;
      const refused = new Map<string, number[]>();
      kinds.forEach((kind, i) => refused.set(kind, [...(refused.get(kind) ?? []), ids[i]]));
      if (ok) {
        Object.assign(row, { page, details: JSON.parse(details), sent: row.sent.filter((x) => x.page === page) });
        for (const [kind, list] of refused) row.sent.push({ page, kind, ids: list });
      }
      // 'page 0 {…}', then ' hops:1,2' for ids refused of a kind.
      const listed = [...refused].map(([kind, list]) => ` ${kind}:${list.join()}`).join('');
      writes.push(`page ${page} ${details}${listed}${ok ? '' : ' refused'}`);
      return result([{ n: ok ? 1 : 0 }], 1);
    }
    if (text.startsWith('INSERT INTO send_progress_sent')) {
      const [, , fence, page, ids] = values as [string, string, number, number, number[]];
      const ok = !!row && row.fence === fence && row.page === page && !row.closed;
      if (ok) row.sent.push({ page, kind: 'sent', ids: [...ids] });
      writes.push(`ids ${ids.join()}${ok ? '' : ' refused'}`);
      return result([], ok ? 1 : 0);
    }
    if (text.startsWith('DELETE FROM send_progress WHERE ctid')) return result([], 0);
    return undefined;
  };
  return { rows, writes, answer };
}
