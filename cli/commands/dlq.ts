import { ApiClient } from '../api-client';

const HELP = `Usage:
  crm-events-sink dlq list [--status pending|retrying|resolved|parked] [--limit N]
  crm-events-sink dlq retry <entry-id>
  crm-events-sink dlq schedule show|pause|unpause|trigger
  crm-events-sink dlq schedule interval <duration, e.g. 10m>`;

/** `dlq ...`: dead letters and their retry schedule, through the API. */
export async function dlqCommand(argv: string[], api = new ApiClient()): Promise<void> {
  const [sub, ...rest] = argv;
  const print = (value: unknown) => console.log(JSON.stringify(value, null, 2));
  const flag = (name: string) => {
    const i = rest.indexOf(`--${name}`);
    return i >= 0 ? rest[i + 1] : undefined;
  };
  switch (sub) {
    case 'list': {
      const params = new URLSearchParams();
      if (flag('status')) params.set('status', flag('status')!);
      if (flag('limit')) params.set('limit', flag('limit')!);
      const rows = await api.request<{ id: number; status: string; topic: string; reason: string; error: string }[]>(
        'GET',
        `/dlq?${params}`,
      );
      if (rows.length === 0) return console.log('DLQ is empty for this filter');
      for (const r of rows) console.log(`${r.id}\t${r.status}\t${r.topic}\t${r.reason}\t${r.error.slice(0, 100)}`);
      return;
    }
    case 'retry':
      if (!/^\d+$/.test(rest[0] ?? '')) throw new Error('dlq retry takes an entry id');
      return print(await api.request('POST', `/dlq/${rest[0]}/retry`));
    case 'schedule': {
      const [action, value] = rest;
      if (action === 'show' || action === undefined) return print(await api.request('GET', '/dlq/retry-schedule'));
      if (action === 'pause' || action === 'unpause') {
        return print(await api.request('PATCH', '/dlq/retry-schedule', { paused: action === 'pause' }));
      }
      if (action === 'interval') return print(await api.request('PATCH', '/dlq/retry-schedule', { interval: value }));
      if (action === 'trigger') return print(await api.request('POST', '/dlq/retry-schedule/trigger'));
      throw new Error(HELP);
    }
    default:
      console.log(HELP);
  }
}
