import { parseArgs } from 'node:util';
import { SingleBar, Presets } from 'cli-progress';
import { ApiClient } from '../api-client';
import { jsonOption } from '../json-option';

interface Accepted {
  workflow_id: string;
  status_url: string;
}
interface Detail {
  workflow_status: string;
  progress: { matched: number; published: number; failed: number; eventsPerSecond: number; status: string } | null;
  result?: unknown;
  temporal_ui_url: string;
}

const HELP = `Usage:
  crm-events-sink replay <id> [--target-topic T] [TRANSFORM]
  crm-events-sink replay batch <id> [<id> ...] [--target-topic T] [TRANSFORM] [--ordering page|per_key]
  crm-events-sink replay range --start ISO --end ISO [--tenant T] [--topic T] [--include-replays]
                               [--payload-filter JSONPATH] [TRANSFORM] [--ordering page|per_key]
                               [--target-topic T] [--rate EVENTS_PER_S] [--dry-run] [--no-follow]
  crm-events-sink replay status|pause|resume|cancel <workflow-id>
TRANSFORM is a JSON Patch (RFC 6902) applied to each payload before it is sent: --transform '<JSON Patch>' or
--transform-file F. A range --dry-run prints the count and the first matches, each also as the transform makes it.
Talks to the API (CRM_EVENTS_API_URL, default http://127.0.0.1:9106; token in CRM_EVENTS_TOKEN).
Range replays are followed with a progress bar fed by the workflow's progress query.`;

/** `replay ...`: the operator's replay client. */
export async function replayCommand(argv: string[], api = new ApiClient()): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      start: { type: 'string' },
      end: { type: 'string' },
      tenant: { type: 'string' },
      topic: { type: 'string' },
      'target-topic': { type: 'string' },
      'include-replays': { type: 'boolean', default: false },
      rate: { type: 'string' },
      'payload-filter': { type: 'string' },
      transform: { type: 'string' },
      'transform-file': { type: 'string' },
      ordering: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      'no-follow': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  const [sub, ...rest] = positionals;
  if (values.help || !sub) return void console.log(HELP);
  const target = values['target-topic'];
  const print = (value: unknown) => console.log(JSON.stringify(value, null, 2));
  // Sent only when given, so that requests without them stay as they were; the API checks them (a 400 says why).
  const transform = jsonOption('transform', values.transform, values['transform-file']);
  const options = { transform, ordering: values.ordering };

  if (/^\d+$/.test(sub)) {
    const query = target ? `?target_topic=${encodeURIComponent(target)}` : '';
    return print(
      await api.request('POST', `/replay/${sub}${query}`, transform === undefined ? undefined : { transform }),
    );
  }
  switch (sub) {
    case 'batch': {
      const ids = rest.map(Number);
      if (ids.length === 0 || ids.some((id) => !Number.isSafeInteger(id) || id < 1)) {
        throw new Error('replay batch takes one or more positive event ids');
      }
      const accepted = await api.request<Accepted>('POST', '/replay/batch', { ids, target_topic: target, ...options });
      return print(await follow(api, accepted.workflow_id, values['no-follow']));
    }
    case 'range': {
      if (!values.start || !values.end) throw new Error('replay range needs --start and --end (ISO-8601 timestamps)');
      const body = {
        start: values.start,
        end: values.end,
        tenant_id: values.tenant,
        topic: values.topic,
        include_replays: values['include-replays'] || undefined,
        target_topic: target,
        dry_run: values['dry-run'] || undefined,
        max_events_per_second: values.rate === undefined ? undefined : Number(values.rate),
        payload_filter: values['payload-filter'],
        ...options,
      };
      const answer = await api.request<Accepted | Record<string, unknown>>('POST', '/replay/range', body);
      if (values['dry-run'] || !('workflow_id' in answer) || !('status_url' in answer)) return print(answer);
      return print(await follow(api, (answer as Accepted).workflow_id, values['no-follow']));
    }
    case 'status':
      return print(await api.request('GET', `/replays/${encodeURIComponent(rest[0] ?? '')}`));
    case 'pause':
    case 'resume':
    case 'cancel':
      return print(await api.request('POST', `/replays/${encodeURIComponent(rest[0] ?? '')}/${sub}`));
    default:
      throw new Error(`Unknown replay command "${sub}"\n${HELP}`);
  }
}

/** Polls the workflow until it closes, drawing a progress bar from its progress query; returns the final detail. */
async function follow(api: ApiClient, workflowId: string, noFollow: boolean): Promise<Detail | Accepted> {
  if (noFollow) return { workflow_id: workflowId, status_url: `/replays/${workflowId}` };
  const url = `/replays/${encodeURIComponent(workflowId)}`;
  console.error(`Following ${workflowId} (Ctrl-C stops following; the replay goes on)`);
  const bar = new SingleBar(
    {
      format: 'replay [{bar}] {value}/{total} published | {eps} ev/s | {state}',
      stream: process.stderr,
      noTTYOutput: true,
      notTTYSchedule: 1000,
    },
    Presets.shades_classic,
  );
  let started = false;
  for (;;) {
    const detail = await api.request<Detail>('GET', url);
    const p = detail.progress;
    if (p) {
      if (!started) bar.start(Math.max(p.matched, 1), 0, { eps: 0, state: p.status });
      started = true;
      bar.setTotal(Math.max(p.matched, 1));
      bar.update(p.published + p.failed, { eps: p.eventsPerSecond, state: p.status });
    }
    if (detail.workflow_status !== 'RUNNING') {
      if (started) bar.stop();
      return detail;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}
