import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWK, type JWTPayload, type KeyLike } from 'jose';
import { bearer, buildTestApp, createApiEnv, json, type ApiEnv } from '../support/api';

/**
 * Maintained auth on the real API: tokens verified with jose against a JWKS this test serves itself (as an OIDC
 * provider would), HS256 keys rotated by kid, and iss/aud/exp enforced, each refusal a 401 naming the reason.
 */
const ISSUER = 'https://idp.test.example';
const AUDIENCE = 'crm-events-sink';
const HS = { k1: 'first-hs256-secret-0123456789', k2: 'second-hs256-secret-0123456789' };

interface SigningKey {
  kid: string;
  alg: 'RS256' | 'ES256';
  privateKey: KeyLike;
  publicKey: KeyLike;
}

let env: ApiEnv;
let jwksServer: http.Server;
let jwksUrl: string;
let jwksRequests = 0;
let rsa: SigningKey;
let ec: SigningKey;
let outsider: SigningKey; // a key pair the JWKS does not publish

async function signingKey(kid: string, alg: SigningKey['alg']): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg);
  return { kid, alg, privateKey, publicKey };
}

const now = () => Math.floor(Date.now() / 1000);

/** A token as the provider would issue it; `claims` override or (as undefined) remove the defaults. */
function providerToken(key: SigningKey, claims: JWTPayload = {}, kid: string | undefined = key.kid): Promise<string> {
  const payload: JWTPayload = {
    sub: 'oidc-user',
    role: 'viewer',
    iss: ISSUER,
    aud: AUDIENCE,
    exp: now() + 600,
    ...claims,
  };
  for (const name of Object.keys(payload)) if (payload[name] === undefined) delete payload[name];
  return new SignJWT(payload).setProtectedHeader({ alg: key.alg, ...(kid ? { kid } : {}) }).sign(key.privateKey);
}

/** An HS256 token from the rotation ring. */
function ringToken(kid: string, secret: string, claims: JWTPayload = {}): Promise<string> {
  return new SignJWT({ sub: `ring-${kid}`, role: 'operator', iss: ISSUER, aud: AUDIENCE, exp: now() + 600, ...claims })
    .setProtectedHeader({ alg: 'HS256', kid })
    .sign(new TextEncoder().encode(secret));
}

const get = (token: string, url = '/events') => env.app.inject({ method: 'GET', url, headers: bearer(token) });

beforeAll(async () => {
  [rsa, ec, outsider] = await Promise.all([
    signingKey('rsa-2026-01', 'RS256'),
    signingKey('ec-2026-02', 'ES256'),
    signingKey('rsa-2026-01', 'RS256'),
  ]);
  const keys: JWK[] = await Promise.all(
    [rsa, ec].map(async (k) => ({ ...(await exportJWK(k.publicKey)), kid: k.kid, alg: k.alg, use: 'sig' })),
  );
  jwksServer = http.createServer((req, res) => {
    jwksRequests += 1;
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }));
  });
  await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
  jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`;
  env = await createApiEnv('api-jwks', {
    env: {
      AUTH_JWKS_URL: jwksUrl,
      AUTH_ISSUER: ISSUER,
      AUTH_AUDIENCE: AUDIENCE,
      AUTH_JWT_SECRETS: `k1:${HS.k1},k2:${HS.k2}`,
    },
    worker: false,
    ingest: false,
  });
});

afterAll(async () => {
  await env?.close();
  await new Promise((resolve) => jwksServer?.close(resolve));
});

describe('JWKS (OIDC provider)', () => {
  it('accepts an RS256 token whose kid the JWKS publishes, and reads its role', async () => {
    const viewer = await providerToken(rsa);
    expect((await get(viewer)).statusCode).toBe(200);
    expect(jwksRequests).toBeGreaterThanOrEqual(1);
    // The role claim is what the API acts on: a viewer may not replay.
    const replay = await env.app.inject({ method: 'POST', url: '/replay/1', headers: bearer(viewer) });
    expect(replay.statusCode).toBe(403);
    expect(json(replay).message).toMatch(/Role viewer .* needs operator/);
  });

  it('accepts tokens of both published keys (RS256 and ES256): the provider rotates without downtime', async () => {
    expect((await get(await providerToken(rsa))).statusCode).toBe(200);
    expect((await get(await providerToken(ec))).statusCode).toBe(200);
  });

  it.each<[string, () => Promise<string>, RegExp]>([
    [
      'with a kid the JWKS does not publish',
      () => providerToken(outsider, {}, 'rsa-retired'),
      /No key in the JWKS .*"rsa-retired"/,
    ],
    ['signed by another key under a published kid', () => providerToken(outsider), /signature is invalid/],
    ['that has expired', () => providerToken(rsa, { exp: now() - 30 }), /expired/],
    ['without exp', () => providerToken(rsa, { exp: undefined }), /no expiry \(exp\)/],
    [
      'from another issuer',
      () => providerToken(rsa, { iss: 'https://evil.example' }),
      /issuer \(iss\) must be https:\/\/idp\.test\.example/,
    ],
    ['without an issuer', () => providerToken(rsa, { iss: undefined }), /issuer \(iss\)/],
    [
      'for another audience',
      () => providerToken(rsa, { aud: 'some-other-app' }),
      /audience \(aud\) must include crm-events-sink/,
    ],
    ['without a role', () => providerToken(rsa, { role: undefined }), /role must be one of viewer, operator, admin/],
  ])('refuses a token %s with 401 naming the reason', async (_name, make, reason) => {
    const res = await get(await make());
    expect(res.statusCode).toBe(401);
    expect(json(res)).toEqual({ statusCode: 401, error: 'Unauthorized', message: expect.stringMatching(reason) });
  });

  it('refuses HS256 signed with the provider public key (algorithm confusion)', async () => {
    const pem = await exportSPKI(rsa.publicKey);
    const forged = await new SignJWT({ sub: 'mallory', role: 'admin', iss: ISSUER, aud: AUDIENCE, exp: now() + 600 })
      .setProtectedHeader({ alg: 'HS256', kid: rsa.kid })
      .sign(new TextEncoder().encode(pem));
    const res = await get(forged);
    expect(res.statusCode).toBe(401);
    expect(json(res).message).toMatch(/\(kid\) "rsa-2026-01" is not a configured key/);
  });

  it('answers 503, not 401, while the JWKS cannot be fetched', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const deadUrl = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/jwks.json`;
    await new Promise((resolve) => closed.close(resolve)); // nothing listens there now
    const app = await buildTestApp(env.h, { ...env.h.config, api: { ...env.h.config.api, jwksUrl: deadUrl } });
    try {
      const res = await app.inject({ method: 'GET', url: '/events', headers: bearer(await providerToken(rsa)) });
      expect(res.statusCode).toBe(503);
      expect(json(res).message).toMatch(/JWKS/);
    } finally {
      await app.close();
    }
  });
});

describe('HS256 key rotation (AUTH_JWT_SECRETS)', () => {
  it('accepts tokens of every key in the ring, each by its kid', async () => {
    expect((await get(await ringToken('k1', HS.k1))).statusCode).toBe(200);
    expect((await get(await ringToken('k2', HS.k2))).statusCode).toBe(200);
  });

  it.each<[string, () => Promise<string>, RegExp]>([
    [
      'of a retired kid',
      () => ringToken('k0', 'retired-hs256-secret-0123456789'),
      /\(kid\) "k0" is not a configured key/,
    ],
    ['signed with one key but naming another', () => ringToken('k2', HS.k1), /signature is invalid/],
    [
      'without kid (no default AUTH_JWT_SECRET here)',
      async () => {
        return new SignJWT({ sub: 'x', role: 'admin', iss: ISSUER, aud: AUDIENCE, exp: now() + 600 })
          .setProtectedHeader({ alg: 'HS256' })
          .sign(new TextEncoder().encode(HS.k1));
      },
      /no key id \(kid\)/,
    ],
    ['with the configured iss/aud missing', () => ringToken('k1', HS.k1, { aud: 'elsewhere' }), /audience \(aud\)/],
  ])('refuses a token %s', async (_name, make, reason) => {
    const res = await get(await make());
    expect(res.statusCode).toBe(401);
    expect(json(res).message).toMatch(reason);
  });
});
