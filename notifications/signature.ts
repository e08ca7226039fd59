import { createHmac, timingSafeEqual } from 'node:crypto';

/** HMAC-SHA256 of `${timestamp}.${body}`, hex, after the scheme version: `v1=<hex>`. */
export const SIGNATURE_HEADER = 'x-crm-signature';
/** Unix seconds when the attempt was sent; signed with the body, so an old delivery cannot be sent again as new. */
export const TIMESTAMP_HEADER = 'x-crm-timestamp';
/** The notification's id: the same for every attempt and every URL (receivers deduplicate on it). */
export const NOTIFICATION_ID_HEADER = 'x-crm-notification-id';
export const KIND_HEADER = 'x-crm-notification-kind';

/** Oldest timestamp a receiver should accept, in seconds (the README's verification recipe). */
export const DEFAULT_TOLERANCE_SECONDS = 300;

/** The signature header's value for one attempt. */
export function signNotification(secret: string, timestamp: number, body: string): string {
  return `v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}

export interface VerifyInput {
  secret: string;
  /** The raw request body, exactly as received (before any JSON parsing). */
  body: string;
  signature: string | undefined;
  timestamp: string | undefined;
  /** Receiver's clock, unix seconds. */
  now: number;
  toleranceSeconds?: number;
}

/**
 * The receiver's side, as the README's recipe describes it: the timestamp is recent (replays of older deliveries are
 * refused) and one of the header's `v1=` signatures is the HMAC of timestamp + body, compared in constant time.
 * Returns why it is refused, or undefined when it is genuine.
 */
export function verifyNotification(input: VerifyInput): string | undefined {
  const tolerance = input.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  if (!input.timestamp || !/^\d{1,12}$/.test(input.timestamp)) return 'missing or malformed timestamp';
  const timestamp = Number(input.timestamp);
  if (Math.abs(input.now - timestamp) > tolerance) return 'timestamp outside the tolerance (a replayed delivery?)';
  const expected = Buffer.from(signNotification(input.secret, timestamp, input.body));
  // Several signatures may be sent at once (space-separated) while a secret is rotated.
  const given = (input.signature ?? '').split(/[\s,]+/).filter((s) => s.startsWith('v1='));
  const matches = given.some((s) => {
    const candidate = Buffer.from(s);
    return candidate.length === expected.length && timingSafeEqual(candidate, expected);
  });
  return matches ? undefined : 'signature does not match';
}
