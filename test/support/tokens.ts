import { createHmac } from 'node:crypto';

/**
 * Signs an HS256 JWT synchronously, for tests that need a token at module load (a browser page, a stream URL).
 * Written against RFC 7515 rather than with jose on purpose: the API verifies with jose, so every test that uses it
 * also shows that a token from another signer is accepted. Claims are sent as given (`exp` too: add it yourself).
 */
export function signToken(claims: Record<string, unknown>, secret: string, header: { kid?: string } = {}): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const signed = `${part({ alg: 'HS256', typ: 'JWT', ...header })}.${part({ iat: Math.floor(Date.now() / 1000), ...claims })}`;
  return `${signed}.${createHmac('sha256', secret).update(signed).digest('base64url')}`;
}
