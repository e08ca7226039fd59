// The operator panels around the live stream: token, latest events with replay, replay workflows with progress and
// cancel, and the DLQ with retry (the range-replay form is range-replay.js). Loaded after util.js and live.js.
'use strict';

const REFRESH_MS = 10_000;
const PROGRESS_MS = 2000;
const ACTIVE = new Set(['requested', 'running']);

// Links to workflows in the Temporal UI, from GET / (rows polled for progress carry the API's own temporal_ui_url).
let temporalUi = '';
let namespace = 'default';
const workflowUrl = (id) =>
  `${temporalUi}/namespaces/${encodeURIComponent(namespace)}/workflows/${encodeURIComponent(id)}`;

// ------------------------------------------------------------------ token

function showWho() {
  const who = document.getElementById('whoami');
  if (!auth.token) return (who.textContent = 'no token (fine while auth is off)');
  const claims = auth.claims();
  if (!claims) return (who.textContent = 'this does not look like a JWT');
  const expires = claims.exp ? ` · expires ${fmtTime(new Date(claims.exp * 1000).toISOString())}` : '';
  who.textContent = `${claims.sub} · ${claims.role}${claims.tenant_id ? ` · tenant ${claims.tenant_id}` : ''}${expires}`;
}

function setupToken(onChange) {
  const input = document.getElementById('token');
  input.value = auth.token;
  document.getElementById('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    auth.token = input.value.trim();
    onChange();
    notify(auth.token ? 'Token saved in this browser.' : 'No token set.');
  });
  document.getElementById('token-forget').addEventListener('click', () => {
    input.value = '';
    auth.token = '';
    onChange();
    notify('Token forgotten.');
  });
}

// ------------------------------------------------------------------ latest events

async function refreshLatest() {
  const { data } = await api('GET', '/events/latest?limit=25');
  const rows = data.map((e) =>
    el(
      'tr',
      { dataset: { id: String(e.id) } },
      el('td', { className: 'mono', text: e.id }),
      el('td', { className: 'time', text: fmtTime(e.received_at) }),
      el('td', { text: e.topic }),
      el('td', { text: e.tenant_id }),
      el('td', {}, replayBadge(e.replay_count, e.replay_source)),
      el(
        'td',
        { className: 'actions' },
        el('button', {
          className: 'small',
          text: 'Replay',
          dataset: { action: 'replay' },
          onclick: (ev) => replayOne(ev.target, e.id),
        }),
      ),
    ),
  );
  document.getElementById('latest-rows').replaceChildren(...rows);
}

async function replayOne(button, id) {
  const result = await act(button, () => api('POST', `/replay/${id}`));
  if (!result) return;
  const r = result.data;
  notify(
    result.status === 200
      ? `Replayed event #${r.event_id} to ${r.topic} (replay ×${r.replay_count}); it comes back on the live stream.`
      : `Replay of #${id} accepted as ${r.workflow_id}; follow it under Replay workflows.`,
  );
  void showReplay(r.workflow_id);
}

// ------------------------------------------------------------------ replay workflows

async function refreshReplays() {
  const { data } = await api('GET', '/replays?limit=20');
  const rows = data.items.map((a) => {
    const dryRun = a.filter && a.filter.dry_run === true;
    const progress = el(
      'td',
      { className: 'progress' },
      dryRun ? `dry run: ${a.matched} matched` : progressOf(a.status, a.published, a.matched, a.failed),
    );
    const cancel = ACTIVE.has(a.status)
      ? el('button', {
          className: 'small danger',
          text: 'Cancel',
          onclick: (ev) => cancelReplay(ev.target, a.workflow_id),
        })
      : null;
    return el(
      'tr',
      { dataset: { workflowId: a.workflow_id, status: a.status } },
      el(
        'td',
        {},
        el('a', {
          className: 'mono',
          href: workflowUrl(a.workflow_id),
          target: '_blank',
          rel: 'noopener',
          text: a.workflow_id,
        }),
      ),
      el('td', { text: `${a.kind} · ${a.source}` }),
      el('td', {}, statusBadge(a.status), a.error ? el('div', { className: 'error-text', text: a.error }) : null),
      progress,
      el('td', { className: 'time', text: fmtTime(a.created_at) }),
      el('td', { className: 'actions' }, cancel),
    );
  });
  document.getElementById('replay-rows').replaceChildren(...rows);
}

/** Refreshes the list until a workflow just started shows up in it (its audit row is written as it starts). */
async function showReplay(workflowId, attempts = 20) {
  for (let i = 0; i < attempts; i++) {
    try {
      await refreshReplays();
    } catch (err) {
      return report(err);
    }
    if (document.querySelector(`#replay-rows tr[data-workflow-id="${CSS.escape(workflowId)}"]`)) return;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

function progressOf(status, published, matched, failed) {
  const text = `${published}/${matched} published${failed ? `, ${failed} failed` : ''}`;
  if (!ACTIVE.has(String(status).toLowerCase())) return el('span', { text });
  return el('span', {}, el('progress', { max: Math.max(matched, 1), value: published }), ` ${text}`);
}

/** Asks each running workflow for its live progress (GET /replays/:id queries the workflow itself). */
async function pollProgress() {
  const running = [...document.querySelectorAll('#replay-rows tr')].filter((tr) => ACTIVE.has(tr.dataset.status));
  let finished = false;
  await Promise.all(
    running.map(async (tr) => {
      const { data } = await api('GET', `/replays/${encodeURIComponent(tr.dataset.workflowId)}`);
      tr.querySelector('a').href = data.temporal_ui_url;
      if (data.workflow_status !== 'RUNNING') finished = true;
      else if (data.progress) {
        const p = data.progress;
        const cell = tr.querySelector('td.progress');
        cell.replaceChildren(progressOf('running', p.published, p.matched, p.failed));
        cell.dataset.live = `${p.published}/${p.matched}`;
      }
    }),
  );
  if (finished) await refreshReplays();
}

async function cancelReplay(button, workflowId) {
  const result = await act(button, () => api('POST', `/replays/${encodeURIComponent(workflowId)}/cancel`));
  if (!result) return;
  notify(`Cancellation of ${workflowId} requested.`);
  setTimeout(() => void refreshReplays().catch(report), 1000);
}

// ------------------------------------------------------------------ DLQ

async function refreshDlq() {
  const { data } = await api('GET', '/dlq?limit=25');
  const rows = data.map((d) =>
    el(
      'tr',
      { dataset: { id: String(d.id), status: d.status } },
      el('td', { className: 'mono', text: d.id }),
      el('td', { text: d.topic }),
      el('td', { text: d.tenant_id ?? '—' }),
      el(
        'td',
        {},
        el('div', { text: d.reason }),
        el('div', { className: 'error-text', text: d.last_error || d.error }),
      ),
      el('td', {}, statusBadge(d.status)),
      el('td', { text: d.attempts }),
      el(
        'td',
        { className: 'actions' },
        d.status === 'resolved'
          ? null
          : [
              el('button', { className: 'small', text: 'Retry', onclick: (ev) => retryDlq(ev.target, d.id) }),
              el('button', { className: 'small ghost', text: 'Edit', onclick: () => void openRepair(d.id) }),
            ],
      ),
    ),
  );
  document.getElementById('dlq-rows').replaceChildren(...rows);
}

async function retryDlq(button, id) {
  const result = await act(button, () => api('POST', `/dlq/${id}/retry`));
  if (!result) return;
  const r = result.data;
  const outcome =
    r.status === 'accepted'
      ? `accepted as ${r.workflow_id}`
      : `resolved ${r.resolved ?? 0}, retrying ${r.retrying ?? 0}, parked ${r.parked ?? 0}`;
  notify(`Retry of DLQ entry #${id}: ${outcome}.`);
  await Promise.all([refreshDlq().catch(report), showReplay(r.workflow_id)]);
}

// ------------------------------------------------------------------ start

function report(err) {
  notify(err.message, 'error');
}

function refreshAll() {
  return Promise.all([refreshLatest(), refreshReplays(), refreshDlq(), refreshDlqGroups(), refreshLifecycle()]).catch(
    report,
  );
}

async function loadInfo() {
  const { data } = await api('GET', '/');
  temporalUi = data.temporal_ui.replace(/\/$/, '');
  namespace = data.temporal_namespace;
  const link = document.getElementById('temporal-link');
  link.href = temporalUi;
  link.hidden = false;
}

function start() {
  const live = createLiveStream();
  const restart = () => {
    showWho();
    live.connect();
    void refreshAll();
  };
  setupToken(restart);
  setupLifecycle();
  setupDlqGroups();
  document.getElementById('latest-refresh').addEventListener('click', () => void refreshLatest().catch(report));
  document.getElementById('replays-refresh').addEventListener('click', () => void refreshReplays().catch(report));
  document.getElementById('dlq-refresh').addEventListener('click', () => void refreshDlq().catch(report));
  void loadInfo().catch(report).then(restart);
  setInterval(() => void refreshAll(), REFRESH_MS);
  setInterval(() => void pollProgress().catch(() => undefined), PROGRESS_MS);
}

start();
