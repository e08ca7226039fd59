import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { eventually } from './sink';

const REPO = path.resolve(__dirname, '../..');

export interface TestPrometheus {
  url: string;
  stop(): void;
}

/** A free TCP port on 127.0.0.1 (free when asked: another process may take it before the caller listens). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * A real Prometheus (Debian package `prometheus`) in `dir`, running the repository's monitoring/prometheus.native.yml
 * with the rule files as they are, scraping and evaluating every second, after `adapt` has moved its addresses to
 * the test's ports. Resolves once Prometheus is ready.
 */
export async function startPrometheus(dir: string, adapt: (config: string) => string): Promise<TestPrometheus> {
  if (!fs.existsSync('/usr/bin/prometheus'))
    throw new Error('prometheus is not installed: apt-get install prometheus (scripts/test.sh does)');
  const config = adapt(
    fs
      .readFileSync(path.join(REPO, 'monitoring/prometheus.native.yml'), 'utf8')
      .replace(/scrape_interval: \d+s/, 'scrape_interval: 1s')
      .replace(/evaluation_interval: \d+s/, 'evaluation_interval: 1s')
      .replace('rules/*.yml', path.join(REPO, 'monitoring/rules/*.yml')),
  );
  fs.writeFileSync(path.join(dir, 'prometheus.yml'), config);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(
    '/usr/bin/prometheus',
    [
      `--config.file=${path.join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    { stdio: 'ignore' },
  );
  await eventually(async () => (await fetch(`${url}/-/ready`)).ok, 'Prometheus to be ready', 60_000);
  return { url, stop: () => child.kill('SIGTERM') };
}
