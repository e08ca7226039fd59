import type { QueryResult } from 'pg';
import type { Answer } from './answering-pool';

interface Row {
  workflowId: string;
  fence: number;
  page: number;
  details: Record<string, unknown>;
  closed: boolean;
  /** send_progress_sent's rows of the activity: page and ids. */
  sent: { page: number; ids: number[] }[];
}

const result = (rows: unknown[], rowCount: number) => ({ rows, rowCount }) as unknown as QueryResult;

/**
 * send_progress and send_progress_sent (sql/023) in memory, for unit tests under fake timers: answers the statements
 * of repository/send-progress.ts as Postgres does (a page write refused once a later attempt wrote or the activity was
 * closed; ids added only while the row is the attempt's, on that page; the first write of an attempt closing the
 * workflow's other rows; the sweep by age deletes nothing here), and every other statement with undefined
 * (answeringPool's default). `writes` lists each write as it was answered.
 */
export function sendProgressTable() {
  const rows = new Map<string, Row>();
  const writes: string[] = [];
  const answer: Answer = (text, values) => {
    const id = `${values[0]}/${values[1]}`;
    const row = rows.get(id);
    if (text.startsWith('WITH touched AS')) {
      if (!row || row.closed) return result([], 0);
      const sent = [...new Set(row.sent.filter((s) => s.page === row.page).flatMap((s) => s.ids))].sort(
        (a, b) => a - b,
      );
      return result([{ page: row.page, details: structuredClone(row.details), sent: sent.map(String) }], 1);
    }
    if (text.startsWith('INSERT INTO send_progress (')) {
      const [, , workflowId, fence, page, details] = values as [string, string, string, number, number, string];
      const ok = !row || (!row.closed && row.fence <= fence);
      if (ok)
        rows.set(id, { workflowId, fence, page, details: JSON.parse(details), closed: false, sent: row?.sent ?? [] });
      writes.push(`page ${page} ${details}${ok ? '' : ' refused'}`);
      return result([], ok ? 1 : 0);
    }
    if (text.startsWith('DELETE FROM send_progress_sent')) {
      if (row) row.sent = row.sent.filter((s) => s.page === values[2]);
      return result([], 0);
    }
    if (text.startsWith('INSERT INTO send_progress_sent')) {
      const [, , fence, page, ids] = values as [string, string, number, number, number[]];
      const ok = !!row && row.fence === fence && row.page === page && !row.closed;
      if (ok) row.sent.push({ page, ids: [...ids] });
      writes.push(`ids ${ids.join()}${ok ? '' : ' refused'}`);
      return result([], ok ? 1 : 0);
    }
    if (text.startsWith('WITH closed AS')) {
      for (const [other, r] of rows) {
        if (r.workflowId === values[0] && other !== `${values[1]}/${values[2]}` && !r.closed) {
          Object.assign(r, { closed: true, details: {}, sent: [] });
        }
      }
      return result([], 0);
    }
    if (text.startsWith('DELETE FROM send_progress WHERE ctid')) return result([], 0);
    return undefined;
  };
  return { rows, writes, answer };
}
