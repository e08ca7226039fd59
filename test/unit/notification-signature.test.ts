import { createHmac } from 'node:crypto';
import { signNotification, verifyNotification } from '../../notifications/signature';

// The receiver's recipe of the README, against the sender's signature.
const secret = 'whsec-test-0123456789abcdef';
const body = '{"id":"replay_completed:replay-range-1","kind":"replay_completed","data":{"matched":3}}';
const now = 1_800_000_000;
const headers = (timestamp: number, b = body, key = secret) => ({
  signature: signNotification(key, timestamp, b),
  timestamp: String(timestamp),
});

it('signs HMAC-SHA256 over "<timestamp>.<body>", hex, as v1=', () => {
  const expected = createHmac('sha256', secret).update(`${now}.${body}`).digest('hex');
  expect(signNotification(secret, now, body)).toBe(`v1=${expected}`);
});

it('accepts a genuine delivery up to 5 minutes old (or ahead), and any of several signatures while rotating', () => {
  expect(verifyNotification({ secret, body, ...headers(now), now })).toBeUndefined();
  expect(verifyNotification({ secret, body, ...headers(now - 300), now })).toBeUndefined();
  expect(verifyNotification({ secret, body, ...headers(now + 300), now })).toBeUndefined();
  const rotating = `${signNotification('old-secret-0123456789', now, body)} ${signNotification(secret, now, body)}`;
  expect(verifyNotification({ secret, body, signature: rotating, timestamp: String(now), now })).toBeUndefined();
});

it('refuses a replay older than 5 minutes, a changed body or timestamp, another key, and missing headers', () => {
  expect(verifyNotification({ secret, body, ...headers(now - 301), now })).toMatch(/tolerance/);
  expect(verifyNotification({ secret, body: body.replace('3', '4'), ...headers(now), now })).toMatch(/signature/);
  // The timestamp is signed: moving it forward to pass the age check breaks the signature.
  const old = headers(now - 3600);
  expect(verifyNotification({ secret, body, signature: old.signature, timestamp: String(now), now })).toMatch(
    /signature/,
  );
  expect(verifyNotification({ secret, body, ...headers(now, body, 'another-secret-012345'), now })).toMatch(
    /signature/,
  );
  expect(verifyNotification({ secret, body, signature: undefined, timestamp: String(now), now })).toMatch(/signature/);
  expect(verifyNotification({ secret, body, signature: 'v1=00', timestamp: undefined, now })).toMatch(/timestamp/);
  expect(verifyNotification({ secret, body, signature: 'v1=00', timestamp: '1e9', now })).toMatch(/timestamp/);
});
