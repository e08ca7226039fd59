/** A small client of the service's HTTP API for the CLI; auth from CRM_EVENTS_TOKEN when set. */
export class ApiClient {
  constructor(
    readonly baseUrl = process.env.CRM_EVENTS_API_URL ?? 'http://127.0.0.1:9106',
    private readonly token = process.env.CRM_EVENTS_TOKEN,
  ) {}

  async request<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    const res = await this.send(method, path, body, headers);
    const text = await res.text();
    const parsed = text ? JSON.parse(text) : undefined;
    if (!res.ok) throw new Error(`${method} ${path} → ${res.status}: ${parsed?.message ?? text}`);
    return parsed as T;
  }

  /** A GET whose body the caller reads as a stream (exports); a refusal throws with the API's message. */
  async stream(path: string): Promise<Response> {
    const res = await this.send('GET', path);
    if (res.ok) return res;
    const text = await res.text();
    const message = (() => {
      try {
        return (JSON.parse(text) as { message?: string }).message ?? text;
      } catch {
        return text;
      }
    })();
    throw new Error(`GET ${path} → ${res.status}: ${message}`);
  }

  private async send(method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
    return fetch(new URL(path, this.baseUrl), {
      method,
      headers: {
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        ...(this.token ? { authorization: `Bearer ${this.token}` } : {}),
        // Without a token the API takes changes only with this header (one no cross-site form can send).
        'x-requested-by': 'crm-events-cli',
        ...headers,
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    }).catch((err: Error) => {
      throw new Error(`Cannot reach the API at ${this.baseUrl} (${reason(err)})`);
    });
  }
}

/** Why fetch failed, from its cause (fetch itself says only "fetch failed"), with what to do about it. */
function reason(err: Error): string {
  const cause = err.cause as NodeJS.ErrnoException | undefined;
  const why = cause?.message ? `${err.message}: ${cause.message}` : err.message;
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(cause?.code ?? '')) {
    return `${why}; trust the API's certificate with NODE_EXTRA_CA_CERTS=<its cert.pem>, as \`npm start\` prints`;
  }
  return `${why}; is \`crm-events-sink api\` running?`;
}
