import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { loadConfig } from '../../shared/config';
import { readTlsPair, selfSignedPair } from '../../shared/tls';

/**
 * Issue 11, point 8: the API's TLS settings. A pair that cannot serve stops the start naming the variable; the
 * self-signed pair is made once (with the openssl command) and reused.
 */
let tmp: string;
let first: { cert: string; key: string };
let second: { cert: string; key: string };

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tls-config-'));
  for (const name of ['a', 'b']) await selfSignedPair(path.join(tmp, name));
  first = { cert: path.join(tmp, 'a/cert.pem'), key: path.join(tmp, 'a/key.pem') };
  second = { cert: path.join(tmp, 'b/cert.pem'), key: path.join(tmp, 'b/key.pem') };
  fs.writeFileSync(path.join(tmp, 'notes.txt'), 'not a certificate\n');
});

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The ConfigError loadConfig throws for `env`, as { variable, message }. */
function refusal(env: Record<string, string>): { name: string; variable: string; message: string } {
  try {
    loadConfig(env);
  } catch (err) {
    const { name, variable, message } = err as { name: string; variable: string; message: string };
    return { name, variable, message };
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('API_TLS_CERT / API_TLS_KEY', () => {
  it('serves plain HTTP when neither is set', () => {
    expect(loadConfig({}).api.tls).toBeUndefined();
  });

  it('takes a certificate and its key, as absolute paths', () => {
    const cwd = process.cwd();
    const relative = { API_TLS_CERT: path.relative(cwd, first.cert), API_TLS_KEY: path.relative(cwd, first.key) };
    expect(loadConfig(relative).api.tls).toEqual({ source: 'files', certFile: first.cert, keyFile: first.key });
  });

  it.each([
    [
      'a certificate without a key',
      () => ({ API_TLS_CERT: first.cert }),
      'API_TLS_KEY',
      /must be set with API_TLS_CERT/,
    ],
    ['a key without a certificate', () => ({ API_TLS_KEY: first.key }), 'API_TLS_CERT', /must be set with API_TLS_KEY/],
    [
      'a certificate file that does not exist',
      () => ({ API_TLS_CERT: path.join(tmp, 'missing.pem'), API_TLS_KEY: first.key }),
      'API_TLS_CERT',
      /names a file that cannot be read: ENOENT/,
    ],
    [
      'a key that is a directory',
      () => ({ API_TLS_CERT: first.cert, API_TLS_KEY: tmp }),
      'API_TLS_KEY',
      /names a file that cannot be read: EISDIR/,
    ],
    [
      'a certificate file that is not PEM',
      () => ({ API_TLS_CERT: path.join(tmp, 'notes.txt'), API_TLS_KEY: first.key }),
      'API_TLS_CERT',
      /notes\.txt\) is not a PEM file/,
    ],
    [
      'the key given as the certificate',
      () => ({ API_TLS_CERT: first.key, API_TLS_KEY: first.key }),
      'API_TLS_CERT',
      /is not a PEM certificate/,
    ],
    [
      'the key of another certificate',
      () => ({ API_TLS_CERT: first.cert, API_TLS_KEY: second.key }),
      'API_TLS_KEY',
      /is not the private key of the certificate in/,
    ],
  ])('refuses %s, naming the variable', (_what, env, variable, message) => {
    const err = refusal(env());
    expect(err).toMatchObject({ name: 'ConfigError', variable });
    expect(err.message).toMatch(message);
  });

  it('refuses an expired certificate', () => {
    const after = new Date(Date.now() + 400 * 86_400_000); // the self-signed pair is valid for 365 days
    expect(() => readTlsPair(first.cert, first.key, after)).toThrow(/API_TLS_CERT \(.*cert\.pem\) expired on/);
  });
});

describe('API_TLS=self-signed', () => {
  it('keeps the pair under API_TLS_DIR, resolved from the working directory', () => {
    expect(loadConfig({ API_TLS: 'self-signed' }).api.tls).toEqual({
      source: 'self-signed',
      dir: path.resolve('.stack/tls'),
    });
    expect(loadConfig({ API_TLS: 'self-signed', API_TLS_DIR: tmp }).api.tls).toEqual({
      source: 'self-signed',
      dir: tmp,
    });
  });

  it.each([
    [
      { API_TLS: 'self-signed', API_TLS_CERT: '/etc/ssl/cert.pem' },
      /API_TLS is self-signed but API_TLS_CERT is set too/,
    ],
    [{ API_TLS: 'self-signed', API_TLS_KEY: '/etc/ssl/key.pem' }, /API_TLS is self-signed but API_TLS_KEY is set too/],
    [{ API_TLS: 'on' }, /API_TLS must be self-signed or empty/],
  ])('refuses %j', (env, message) => {
    expect(refusal(env)).toMatchObject({ name: 'ConfigError', variable: 'API_TLS' });
    expect(refusal(env).message).toMatch(message);
  });

  it('makes a certificate for localhost, 127.0.0.1 and ::1 once, with a key only its owner reads, then reuses it', async () => {
    const dir = path.join(tmp, 'once');
    const made = await selfSignedPair(dir);
    expect(made.generated).toBe(true);
    const x509 = new X509Certificate(made.cert);
    expect(x509.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    expect(fs.statSync(path.join(dir, 'key.pem')).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dir).sort()).toEqual(['cert.pem', 'key.pem']);

    const again = await selfSignedPair(dir);
    expect(again).toEqual({ ...made, generated: false });
  });

  it('makes a new pair when the cached one is damaged or about to expire', async () => {
    const dir = path.join(tmp, 'renew');
    const made = await selfSignedPair(dir);
    fs.writeFileSync(path.join(dir, 'key.pem'), 'damaged');
    const repaired = await selfSignedPair(dir);
    expect(repaired.generated).toBe(true);
    expect(repaired.cert.equals(made.cert)).toBe(false);

    const nearEnd = new Date(Date.now() + 360 * 86_400_000);
    const renewed = await selfSignedPair(dir, nearEnd);
    expect(renewed.generated).toBe(true);
    expect(renewed.cert.equals(repaired.cert)).toBe(false);
  });
});
