import { readFileSync } from 'node:fs';
import { ApiClient } from '../api-client';

const HELP = `Usage:
  crm-events-sink dlq list [--status pending|retrying|resolved|parked] [--limit N]
  crm-events-sink dlq retry <entry-id>
  crm-events-sink dlq repair (--ids 7,8 | [--status S] [--topic T] [--tenant ID])
                             (--patch '<JSON Patch>' | --patch-file F | --value '<JSON>' | --value-file F)
                             [--apply] [--reason TEXT]      (previews unless --apply)
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
    case 'repair':
      return print(await api.request('POST', '/dlq/repair', repairBody(flag, rest.includes('--apply'))));
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

/** The body of POST /dlq/repair from the command's flags: a preview unless --apply. */
export function repairBody(flag: (name: string) => string | undefined, apply: boolean): Record<string, unknown> {
  const jsonOf = (name: string) => {
    const text =
      flag(name) ?? (flag(`${name}-file`) === undefined ? undefined : readFileSync(flag(`${name}-file`)!, 'utf8'));
    return text === undefined ? undefined : (JSON.parse(text) as unknown);
  };
  const ids = flag('ids')?.split(',').map(Number);
  const filter = { status: flag('status'), topic: flag('topic'), tenant_id: flag('tenant') };
  return {
    ...(ids ? { ids } : { filter: Object.fromEntries(Object.entries(filter).filter(([, v]) => v !== undefined)) }),
    patch: jsonOf('patch'),
    value: jsonOf('value'),
    reason: flag('reason'),
    dry_run: apply ? undefined : true,
  };
}
