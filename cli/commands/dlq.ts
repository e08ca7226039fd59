import { ApiClient } from '../api-client';
import { jsonOption } from '../json-option';

const HELP = `Usage:
  crm-events-sink dlq list [--status pending|retrying|resolved|parked|discarded] [--topic T] [--tenant T] [--class C]
                           [--day YYYY-MM-DD] [--limit N]
  crm-events-sink dlq groups [--status S] [--topic T] [--tenant T] [--class C] [--day YYYY-MM-DD]
  crm-events-sink dlq bulk retry|discard|park|unpark [--class C] [--topic T] [--tenant T] [--day D] [--status S]
                           [--reason "why"] [--page-size N] [--yes]   (without --yes: a dry run, nothing changes)
  crm-events-sink dlq retry <entry-id>
  crm-events-sink dlq repair (--ids 7,8 | [--status S] [--topic T] [--tenant T] [--class C] [--day D])
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
      const params = new URLSearchParams(filterOf(flag) as Record<string, string>);
      if (flag('limit')) params.set('limit', flag('limit')!);
      const rows = await api.request<{ id: number; status: string; topic: string; reason: string; error: string }[]>(
        'GET',
        `/dlq?${params}`,
      );
      if (rows.length === 0) return console.log('DLQ is empty for this filter');
      for (const r of rows) console.log(`${r.id}\t${r.status}\t${r.topic}\t${r.reason}\t${r.error.slice(0, 100)}`);
      return;
    }
    case 'groups': {
      const params = new URLSearchParams(filterOf(flag) as Record<string, string>);
      const groups = await api.request<DlqGroup[]>('GET', `/dlq/groups?${params}`);
      if (groups.length === 0) return console.log('No dead letters for this filter');
      for (const g of groups) {
        console.log(`${g.count}\t${g.day}\t${g.topic}\t${g.error_class}\tsample ids ${g.sample_ids.join(',')}`);
      }
      return;
    }
    case 'bulk': {
      const [action] = rest;
      if (!['retry', 'discard', 'park', 'unpark'].includes(action ?? '')) throw new Error(HELP);
      const body = {
        action,
        filter: filterOf(flag),
        ...(flag('reason') ? { reason: flag('reason') } : {}),
        ...(flag('page-size') ? { page_size: Number(flag('page-size')) } : {}),
      };
      const dry = await api.request<{ eligible: number; matched: number }>('POST', '/dlq/bulk', body);
      console.log(`${action}: ${dry.eligible} of ${dry.matched} matching dead letters would be acted on`);
      if (!rest.includes('--yes')) return console.log('Dry run only: add --yes to do it');
      return print(await api.request('POST', '/dlq/bulk', { ...body, dry_run: false }));
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
  const jsonOf = (name: string) => jsonOption(name, flag(name), flag(`${name}-file`));
  const ids = flag('ids')?.split(',').map(Number);
  return {
    ...(ids ? { ids } : { filter: filterOf(flag) }),
    patch: jsonOf('patch'),
    value: jsonOf('value'),
    reason: flag('reason'),
    dry_run: apply ? undefined : true,
  };
}

interface DlqGroup {
  error_class: string | null;
  topic: string;
  day: string;
  count: number;
  sample_ids: number[];
}

/** The DLQ filter the flags give, as the API names its fields. */
function filterOf(flag: (name: string) => string | undefined): Record<string, string | undefined> {
  const fields = { status: 'status', topic: 'topic', tenant: 'tenant_id', class: 'error_class', day: 'day' };
  return Object.fromEntries(
    Object.entries(fields).flatMap(([name, field]) => (flag(name) === undefined ? [] : [[field, flag(name)]])),
  );
}
