import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import { stack } from '../support/stack';

const STACK = path.resolve(__dirname, '../../scripts/stack.sh');
const status = () => execFileSync('bash', [STACK, 'status'], { encoding: 'utf8' });
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

afterAll(() => stack('up'));

it('`stack down` stops what `stack up` started and nothing else; `up` brings it back', () => {
  // A process that looks like a Kafka broker but was not started by the script.
  const decoy = spawn('bash', ['-c', 'exec -a "java -cp libs/* kafka.Kafka server.properties" sleep 300'], {
    stdio: 'ignore',
  });
  try {
    expect(status()).toMatch(/^kafka\s+127\.0\.0\.1:9092\s+up\b/m);
    stack('down', 'kafka');
    expect(status()).toMatch(/^kafka\s+127\.0\.0\.1:9092\s+down\b/m);
    expect(status()).toMatch(/^postgres\s+\S+\s+up\b/m); // the other components were left alone
    expect(alive(decoy.pid!)).toBe(true);
    stack('up', 'kafka');
    expect(status()).toMatch(/^kafka\s+127\.0\.0\.1:9092\s+up\b/m);
    stack('up'); // idempotent when everything runs
    expect(alive(decoy.pid!)).toBe(true);
  } finally {
    decoy.kill('SIGKILL');
  }
});
