import { decodeJwt, decodeProtectedHeader } from 'jose';
import { authSettings, createTokenVerifier } from '../../api/auth/jwt';
import { tokenCommand } from '../../cli/commands/token';
import { loadConfig } from '../../shared/config';

const RING = 'k2:second-secret-0123456789,k1:first-secret-0123456789';
const JWKS = {
  AUTH_JWKS_URL: 'https://idp.example/.well-known/jwks.json',
  AUTH_ISSUER: 'https://idp.example',
  AUTH_AUDIENCE: 'crm',
};

describe('AUTH_* settings', () => {
  it('reads the HS256 ring by kid, and a JWKS URL with its issuer and audience; either turns auth on', () => {
    const ring = loadConfig({ AUTH_JWT_SECRETS: RING, API_HOST: '0.0.0.0', METRICS_HOST: '0.0.0.0' }).api;
    expect(ring).toMatchObject({
      authMode: 'jwt',
      jwtSecrets: { k1: 'first-secret-0123456789', k2: 'second-secret-0123456789' },
    });
    const oidc = loadConfig({ ...JWKS, API_HOST: '0.0.0.0', METRICS_HOST: '0.0.0.0' }).api;
    expect(oidc).toMatchObject({
      authMode: 'jwt',
      jwksUrl: JWKS.AUTH_JWKS_URL,
      issuer: 'https://idp.example',
      audience: 'crm',
    });
  });

  it.each([
    [{ AUTH_JWT_SECRETS: 'k1' }, /AUTH_JWT_SECRETS must be kid:secret pairs/],
    [{ AUTH_JWT_SECRETS: 'k1:short' }, /AUTH_JWT_SECRETS has a secret shorter than 16 characters \(kid k1\)/],
    [{ AUTH_JWT_SECRETS: `${RING},k1:another-secret-0123456789` }, /AUTH_JWT_SECRETS lists kid k1 twice/],
    [{ AUTH_JWKS_URL: 'ftp://idp.example/jwks' }, /AUTH_JWKS_URL must use http: or https:/],
    [{ AUTH_JWKS_URL: JWKS.AUTH_JWKS_URL, AUTH_ISSUER: 'x' }, /AUTH_AUDIENCE must be set with AUTH_JWKS_URL/],
    [{ AUTH_JWKS_URL: JWKS.AUTH_JWKS_URL, AUTH_AUDIENCE: 'x' }, /AUTH_ISSUER must be set with AUTH_JWKS_URL/],
    [{ ...JWKS, AUTH_MODE: 'none' }, /AUTH_MODE is none but AUTH_JWKS_URL is set/],
    [{ AUTH_JWT_SECRETS: RING, AUTH_MODE: 'none' }, /AUTH_MODE is none but AUTH_JWT_SECRETS is set/],
  ])('refuses %j naming the variable', (env, message) => {
    expect(() => loadConfig(env)).toThrow(message);
  });
});

describe('token command', () => {
  const saved = { ...process.env };
  let printed: string[];
  beforeEach(() => {
    printed = [];
    jest.spyOn(console, 'log').mockImplementation((line: string) => void printed.push(line));
  });
  afterEach(() => {
    jest.restoreAllMocks();
    process.env = { ...saved };
  });

  it('mints with the first key of the ring, always with exp, and the API verifier accepts it', async () => {
    process.env = {
      ...saved,
      AUTH_JWT_SECRET: '',
      AUTH_JWT_SECRETS: RING,
      AUTH_ISSUER: 'crm-cli',
      AUTH_AUDIENCE: 'crm-api',
    };
    await tokenCommand(['--role', 'admin', '--subject', 'alice', '--ttl', '120']);
    const [token] = printed;
    expect(decodeProtectedHeader(token)).toMatchObject({ alg: 'HS256', kid: 'k2' });
    const claims = decodeJwt(token);
    expect(claims).toMatchObject({ sub: 'alice', role: 'admin', iss: 'crm-cli', aud: 'crm-api' });
    expect(claims.exp! - Math.floor(Date.now() / 1000)).toBeGreaterThan(100);
    expect(claims.exp! - Math.floor(Date.now() / 1000)).toBeLessThanOrEqual(120);
    const verifier = createTokenVerifier(authSettings(loadConfig().api));
    await expect(verifier.verify(token)).resolves.toEqual({ subject: 'alice', role: 'admin' });
  });

  it('mints with another kid on request, scoped to a tenant, and refuses a kid it does not have', async () => {
    process.env = { ...saved, AUTH_JWT_SECRET: '', AUTH_JWT_SECRETS: RING };
    await tokenCommand(['--role', 'operator', '--tenant', 'acme', '--subject', 'bob', '--kid', 'k1']);
    expect(decodeProtectedHeader(printed[0]).kid).toBe('k1');
    const verifier = createTokenVerifier(authSettings(loadConfig().api));
    await expect(verifier.verify(printed[0])).resolves.toEqual({ subject: 'bob', role: 'operator', tenantId: 'acme' });
    await expect(tokenCommand(['--kid', 'k9'])).rejects.toThrow(/--kid k9 is not in AUTH_JWT_SECRETS \(k2, k1\)/);
  });
});
