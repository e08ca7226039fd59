// The range-replay form (POST /replay/range): time window, tenant, topic, a JSONPath payload filter, a JSON Patch
// transform and the ordering; a dry run shows the counts and the first matches, each as the transform would send it,
// and a refusal shows the API's message beside the form. Loaded after console.js (showReplay, workflowUrl, report).
'use strict';

/** A Date as the value of a datetime-local input (local time, to the second). */
function toLocalInput(date) {
  return new Date(date.getTime() - date.getTimezoneOffset() * 60_000).toISOString().slice(0, 19);
}

function rangeBody(dryRun) {
  const value = (id) => document.getElementById(id).value.trim();
  const start = new Date(value('range-start'));
  const end = new Date(value('range-end'));
  if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime()))
    throw new Error('Range replay needs a start and an end');
  const body = { start: start.toISOString(), end: end.toISOString(), dry_run: dryRun };
  if (value('range-tenant')) body.tenant_id = value('range-tenant');
  if (value('range-topic')) body.topic = value('range-topic');
  if (value('range-rate')) body.max_events_per_second = Number(value('range-rate'));
  if (document.getElementById('range-include-replays').checked) body.include_replays = true;
  if (value('range-payload-filter')) body.payload_filter = value('range-payload-filter');
  if (value('range-ordering') !== 'page') body.ordering = value('range-ordering');
  if (value('range-transform')) {
    try {
      body.transform = JSON.parse(value('range-transform'));
    } catch (err) {
      throw new Error(`The transform is not JSON: ${err.message}`);
    }
  }
  return body;
}

function showRangeResult(...children) {
  const box = document.getElementById('range-result');
  box.replaceChildren(...children);
  box.hidden = false;
}

/** Sends the form; a refusal (the API's 400 naming the problem, or a transform that is not JSON) shows beside it. */
function sendRange(button, dryRun) {
  return act(button, async () => {
    try {
      return await api('POST', '/replay/range', rangeBody(dryRun));
    } catch (err) {
      showRangeResult(el('p', { className: 'error-text refusal', text: err.message }));
      throw err;
    }
  });
}

const counts = (record) =>
  Object.entries(record)
    .sort((a, b) => b[1] - a[1])
    .map(([name, n]) => `${name}: ${n}`)
    .join(', ') || '—';

/** The dry run's first matches: each payload, and with a transform what would be sent or why it cannot be. */
function sampleTable(sample, transform) {
  const pre = (value) => el('pre', { text: JSON.stringify(value, null, 2) });
  return el(
    'table',
    { className: 'range-sample' },
    el(
      'thead',
      {},
      el(
        'tr',
        {},
        el('th', { text: 'id' }),
        el('th', { text: 'payload' }),
        transform ? el('th', { text: 'sent as' }) : null,
      ),
    ),
    el(
      'tbody',
      {},
      sample.map((row) =>
        el(
          'tr',
          { dataset: { id: String(row.id) } },
          el('td', { className: 'mono', text: row.id }),
          el('td', { className: 'payload' }, pre(row.payload)),
          transform
            ? el(
                'td',
                { className: 'transformed' },
                row.transform_error
                  ? el('span', { className: 'error-text', text: row.transform_error })
                  : pre(row.transformed),
              )
            : null,
        ),
      ),
    ),
  );
}

async function previewRange(button) {
  const result = await sendRange(button, true);
  if (!result) return;
  const r = result.data;
  showRangeResult(
    el('strong', { text: `Dry run: ${r.matched} events would be replayed` }),
    el(
      'dl',
      { dataset: { matched: String(r.matched) } },
      el('dt', { text: 'matched' }),
      el('dd', { className: 'matched', text: r.matched }),
      el('dt', { text: 'by topic' }),
      el('dd', { className: 'by-topic', text: counts(r.by_topic) }),
      el('dt', { text: 'by tenant' }),
      el('dd', { className: 'by-tenant', text: counts(r.by_tenant) }),
      r.transform ? el('dt', { text: 'transform' }) : null,
      r.transform ? el('dd', { className: 'transform-id mono', text: r.transform.id }) : null,
    ),
    r.sample && r.sample.length ? el('h4', { text: `First ${r.sample.length} matches` }) : null,
    r.sample && r.sample.length ? sampleTable(r.sample, r.transform) : null,
  );
}

async function replayRange(button) {
  const body = rangeBody(false);
  const scope = [
    body.tenant_id && `tenant ${body.tenant_id}`,
    body.topic && `topic ${body.topic}`,
    body.payload_filter && `payloads matching ${body.payload_filter}`,
    body.transform && `each payload patched by ${body.transform.length} operation(s)`,
    body.ordering && `ordering ${body.ordering}`,
  ].filter(Boolean);
  const question = `Replay every event received from ${body.start} to ${body.end}${scope.length ? ` (${scope.join(', ')})` : ''} to Kafka?`;
  if (!confirm(question)) return;
  const result = await sendRange(button, false);
  if (!result) return;
  const id = result.data.workflow_id;
  showRangeResult(
    el('span', { text: 'Range replay started: ' }),
    el('a', { className: 'mono', href: workflowUrl(id), target: '_blank', rel: 'noopener', text: id }),
  );
  await showReplay(id);
}

document.getElementById('range-preview').addEventListener('click', (e) => void previewRange(e.target));
document.getElementById('range-replay').addEventListener('click', (e) => void replayRange(e.target).catch(report));
const rangeNow = new Date();
document.getElementById('range-start').value = toLocalInput(new Date(rangeNow.getTime() - 3600_000));
document.getElementById('range-end').value = toLocalInput(new Date(rangeNow.getTime() + 300_000));
