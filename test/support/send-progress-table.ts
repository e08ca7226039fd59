import type { QueryResult } from 'pg';
import type { Answer } from './answering-pool';

interface Row {
  workflowId: string;
  attempt: number;
  details: unknown;
}

const result = (rows: unknown[], rowCount: number) => ({ rows, rowCount }) as unknown as QueryResult;

/**
 * send_progress (sql/023) in memory, for unit tests under fake timers: answers the statements of
 * repository/send-progress.ts as Postgres does (a write refused when a later attempt wrote; the first write of an
 * attempt deleting the workflow's other rows), and every other statement with undefined (answeringPool's default).
 * `writes` lists each write as it was answered.
 */
export function sendProgressTable() {
  const rows = new Map<string, Row>();
  const writes: { attempt: number; details: unknown; written: boolean }[] = [];
  const answer: Answer = (text, values) => {
    if (text.startsWith('SELECT details FROM send_progress')) {
      const row = rows.get(`${values[0]}/${values[1]}`);
      return result(row ? [{ details: structuredClone(row.details) }] : [], row ? 1 : 0);
    }
    if (text.startsWith('INSERT INTO send_progress')) {
      const [workflowId, runId, activityId, attempt, details] = values as [string, string, string, number, string];
      const id = `${runId}/${activityId}`;
      const existing = rows.get(id);
      const written = !existing || existing.attempt <= attempt;
      if (written) rows.set(id, { workflowId, attempt, details: JSON.parse(details) });
      writes.push({ attempt, details: JSON.parse(details), written });
      return result([], written ? 1 : 0);
    }
    if (text.startsWith('DELETE FROM send_progress')) {
      const [workflowId, runId, activityId] = values as string[];
      let deleted = 0;
      for (const [id, row] of rows) {
        if (row.workflowId === workflowId && id !== `${runId}/${activityId}`) {
          rows.delete(id);
          deleted += 1;
        }
      }
      return result([], deleted);
    }
    return undefined;
  };
  return { rows, writes, answer };
}
