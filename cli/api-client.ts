/** A small client of the service's HTTP API for the CLI; auth from CRM_EVENTS_TOKEN when set. */
export class ApiClient {
  constructor(
    readonly baseUrl = process.env.CRM_EVENTS_API_URL ?? 'http://127.0.0.1:9106',
    private readonly token = process.env.CRM_EVENTS_TOKEN,
  ) {}

  async request<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
    const res = await fetch(new URL(path, this.baseUrl), {
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
      throw new Error(`Cannot reach the API at ${this.baseUrl} (${err.message}); is \`crm-events-sink api\` running?`);
    });
    const text = await res.text();
    const parsed = text ? JSON.parse(text) : undefined;
    if (!res.ok) throw new Error(`${method} ${path} → ${res.status}: ${parsed?.message ?? text}`);
    return parsed as T;
  }
}
