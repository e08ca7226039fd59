import { spawn } from 'node:child_process';

/**
 * One request by curl (any TLS certificate accepted, 60 s at most), as an outside client sees it: curl's exit code
 * (52 an empty reply, 18 a transfer cut short) and what it printed, the body then `HTTP <status>` (000 when none came).
 */
export function curl(args: string[]): Promise<{ exit: number | null; out: string }> {
  const child = spawn('curl', ['-k', '-sS', '-m', '60', '-w', '\nHTTP %{http_code}', ...args]);
  let out = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.on('error', () => undefined);
  // 'close', not 'exit': a process can exit before its stdout has been read to the end (a fresh-clone run of 2f176f1:
  // curl exit 0 with neither the 202's workflow id nor `HTTP 202` in what had been read).
  return new Promise((resolve) => child.on('close', (exit) => resolve({ exit, out })));
}

/**
 * A JSON change request by curl, as an operator's client sends it (X-Requested-By: `requestedBy`, then `headers`, each
 * `Name: value`).
 */
export function curlJson(method: string, url: string, body: unknown, requestedBy: string, headers: string[] = []) {
  return curl([
    '-X',
    method,
    '-H',
    'content-type: application/json',
    '-H',
    `X-Requested-By: ${requestedBy}`,
    ...headers.flatMap((header) => ['-H', header]),
    '--data',
    JSON.stringify(body),
    url,
  ]);
}
