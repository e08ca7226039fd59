import http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  KIND_HEADER,
  NOTIFICATION_ID_HEADER,
  SIGNATURE_HEADER,
  TIMESTAMP_HEADER,
  verifyNotification,
} from '../../notifications/signature';

/** One POST a receiver got, with its verdict by the README's recipe (undefined: genuine). */
export interface ReceivedNotification {
  body: string;
  json: { id: string; kind: string; created_at: string; data: Record<string, unknown> };
  notificationId: string | undefined;
  kind: string | undefined;
  refused: string | undefined;
  answered: number;
}

export interface WebhookReceiver {
  url: string;
  received: ReceivedNotification[];
  close(): Promise<void>;
}

/**
 * A webhook receiver on 127.0.0.1 that verifies each delivery's signature and timestamp with `secret`, answers 503 to
 * the first `failFirst` requests (and 401 to any it refuses), then 204.
 */
export async function startWebhookReceiver(
  secret: string,
  opts: { failFirst?: number } = {},
): Promise<WebhookReceiver> {
  const received: ReceivedNotification[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const refused = verifyNotification({
        secret,
        body,
        signature: req.headers[SIGNATURE_HEADER] as string | undefined,
        timestamp: req.headers[TIMESTAMP_HEADER] as string | undefined,
        now: Math.floor(Date.now() / 1000),
      });
      const answered = refused ? 401 : received.length < (opts.failFirst ?? 0) ? 503 : 204;
      received.push({
        body,
        json: JSON.parse(body) as ReceivedNotification['json'],
        notificationId: req.headers[NOTIFICATION_ID_HEADER] as string | undefined,
        kind: req.headers[KIND_HEADER] as string | undefined,
        refused,
        answered,
      });
      res.writeHead(answered).end(answered === 503 ? 'busy, try later' : undefined);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hooks/crm`,
    received,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/** A URL nothing listens on (a port just released): every delivery to it is refused. */
export async function downReceiverUrl(): Promise<string> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}/hooks/down`;
}
