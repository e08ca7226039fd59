import { execFile } from 'node:child_process';
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { ConfigError } from './errors';

/** Where the API's certificate comes from: PEM files the operator names, or a self-signed pair made on this host. */
export type ApiTls = { source: 'files'; certFile: string; keyFile: string } | { source: 'self-signed'; dir: string };

/** A certificate and its private key, PEM, as the HTTPS server takes them. */
export interface TlsPair {
  cert: Buffer;
  key: Buffer;
}

/** The names a self-signed certificate is valid for: the addresses `npm start` listens on by default. */
export const SELF_SIGNED_NAMES = ['localhost', '127.0.0.1', '::1'];
const SELF_SIGNED_DAYS = 365;
/** A cached self-signed certificate this close to its end is made anew rather than served until it expires. */
const RENEW_BEFORE_MS = 7 * 86_400_000;

/**
 * Reads and checks a PEM certificate and its private key; throws ConfigError naming API_TLS_CERT or API_TLS_KEY when
 * a file cannot be read, is not PEM of its kind, the key is not the certificate's, or the certificate has expired —
 * so that a bad pair stops the service at start instead of failing every client's handshake.
 */
export function readTlsPair(certFile: string, keyFile: string, now = new Date()): TlsPair {
  const cert = readPem('API_TLS_CERT', certFile);
  const key = readPem('API_TLS_KEY', keyFile);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (err) {
    throw new ConfigError('API_TLS_CERT', `(${certFile}) is not a PEM certificate: ${(err as Error).message}`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch (err) {
    throw new ConfigError(
      'API_TLS_KEY',
      `(${keyFile}) is not an unencrypted PEM private key: ${(err as Error).message}`,
    );
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new ConfigError('API_TLS_KEY', `(${keyFile}) is not the private key of the certificate in ${certFile}`);
  }
  if (new Date(x509.validTo).getTime() <= now.getTime()) {
    throw new ConfigError('API_TLS_CERT', `(${certFile}) expired on ${x509.validTo}`);
  }
  return { cert, key };
}

function readPem(variable: string, file: string): Buffer {
  let content: Buffer;
  try {
    content = fs.readFileSync(file);
  } catch (err) {
    throw new ConfigError(variable, `names a file that cannot be read: ${(err as Error).message}`);
  }
  if (!content.includes('-----BEGIN ')) throw new ConfigError(variable, `(${file}) is not a PEM file`);
  return content;
}

/** The certificate file the API serves with this setting (the one a client trusts, e.g. as NODE_EXTRA_CA_CERTS). */
export function certFileOf(tls: ApiTls): string {
  return tls.source === 'files' ? tls.certFile : path.join(tls.dir, 'cert.pem');
}

/** The pair the API serves: the operator's files, or the self-signed pair under its directory (made if missing). */
export async function loadTlsPair(tls: ApiTls): Promise<TlsPair & { generated: boolean }> {
  if (tls.source === 'files') return { ...readTlsPair(tls.certFile, tls.keyFile), generated: false };
  return selfSignedPair(tls.dir);
}

/**
 * A self-signed certificate for localhost, 127.0.0.1 and ::1, made once and kept in `dir` (cert.pem, key.pem): later
 * starts reuse it, so a browser exception or a client's NODE_EXTRA_CA_CERTS stays valid. It is made anew when missing,
 * unreadable, or within a week of expiring.
 *
 * Made with the `openssl` command: Node's crypto makes keys but cannot sign an X.509 certificate, and openssl is on
 * every Debian that has ca-certificates, where a package (selfsigned, node-forge) would add a dependency to every
 * install for a local convenience.
 */
export async function selfSignedPair(dir: string, now = new Date()): Promise<TlsPair & { generated: boolean }> {
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  try {
    return { ...readTlsPair(certFile, keyFile, new Date(now.getTime() + RENEW_BEFORE_MS)), generated: false };
  } catch {
    // Missing, damaged or about to expire: make a new pair below.
  }
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  // Written beside the final names and renamed, so that two processes starting at once never read half a file.
  const tmp = `${process.pid}-${Date.now()}`;
  const tmpCert = path.join(dir, `cert.${tmp}.pem`);
  const tmpKey = path.join(dir, `key.${tmp}.pem`);
  const names = SELF_SIGNED_NAMES.map((name) => (/^[\d.:]+$/.test(name) ? `IP:${name}` : `DNS:${name}`));
  try {
    await promisify(execFile)('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      String(SELF_SIGNED_DAYS),
      '-subj',
      '/CN=crm-events-sink local (self-signed)',
      '-addext',
      `subjectAltName=${names.join(',')}`,
      '-addext',
      'extendedKeyUsage=serverAuth',
      '-keyout',
      tmpKey,
      '-out',
      tmpCert,
    ]);
    fs.chmodSync(tmpKey, 0o600);
    fs.renameSync(tmpKey, keyFile);
    fs.renameSync(tmpCert, certFile);
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    throw new ConfigError(
      'API_TLS',
      missing
        ? 'is self-signed, which needs the openssl command (apt-get install openssl); or set API_TLS_CERT and API_TLS_KEY'
        : `is self-signed but making the certificate in ${dir} failed: ${(err as Error).message}`,
    );
  } finally {
    fs.rmSync(tmpCert, { force: true });
    fs.rmSync(tmpKey, { force: true });
  }
  return { ...readTlsPair(certFile, keyFile, now), generated: true };
}
