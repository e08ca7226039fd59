// The journal lifecycle panel (docs/lifecycle.md): retention per topic (editable), the time partitions, the last
// maintenance runs with a run button, and the archived segments. Admin only: other tokens see why it is empty.

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

function fmtDay(iso) {
  return iso ? iso.slice(0, 10) : '—';
}

/** Whether the token can read the panel: no token (auth off, or the API says 401), or an admin's without a tenant. */
function lifecycleAllowed() {
  if (!auth.token) return true;
  const claims = auth.claims();
  return Boolean(claims && claims.role === 'admin' && !claims.tenant_id);
}

async function refreshLifecycle() {
  const note = document.getElementById('lifecycle-note');
  const lifecycleTables = ['retention-rows', 'partition-rows', 'maintenance-rows', 'archive-rows', 'erasure-rows'];
  if (!lifecycleAllowed()) {
    for (const id of lifecycleTables) document.getElementById(id).replaceChildren();
    note.textContent = 'Retention, maintenance and the archive need an admin token without tenant_id.';
    note.hidden = false;
    return;
  }
  let retention, maintenance, archive, erasures;
  try {
    [retention, maintenance, archive, erasures] = await Promise.all([
      api('GET', '/retention'),
      api('GET', '/maintenance?limit=5'),
      api('GET', '/archive'),
      api('GET', '/erasure'),
    ]);
  } catch (err) {
    if (err.status !== 403 && err.status !== 401) throw err;
    note.textContent = 'Retention, maintenance and the archive need an admin token without tenant_id.';
    note.hidden = false;
    return;
  }
  note.hidden = true;
  document.getElementById('retention-rows').replaceChildren(
    ...retention.data.policies.map((p) =>
      el(
        'tr',
        { dataset: { topic: p.topic } },
        el('td', { className: 'mono', text: p.topic }),
        el(
          'td',
          {},
          el('input', {
            type: 'number',
            min: '1',
            placeholder: 'forever',
            className: 'days',
            value: p.keep_days === null ? '' : String(p.keep_days),
          }),
        ),
        el('td', { className: 'muted', text: p.source + (p.updated_by ? ` (${p.updated_by})` : '') }),
      ),
    ),
  );
  const m = maintenance.data;
  document.getElementById('partition-summary').textContent =
    `${m.partitions.length} partitions (${m.interval}ly, ${m.partitions_ahead} ahead)` +
    (m.default_partition_rows ? ` — ${m.default_partition_rows} rows in the default partition` : '') +
    (m.schedule ? ` — schedule ${m.schedule.paused ? 'paused' : `next ${fmtTime(m.schedule.next_runs[0])}`}` : '');
  document
    .getElementById('partition-rows')
    .replaceChildren(
      ...m.partitions.map((p) =>
        el(
          'tr',
          { dataset: { name: p.name } },
          el('td', { className: 'mono', text: p.name }),
          el('td', { text: `${p.default ? 'default' : `${fmtDay(p.from)} → ${fmtDay(p.to)}`}` }),
          el('td', { text: p.estimated_rows < 0 ? '—' : Math.round(p.estimated_rows) }),
          el('td', { text: fmtBytes(p.bytes) }),
        ),
      ),
    );
  document
    .getElementById('maintenance-rows')
    .replaceChildren(
      ...m.runs.map((r) =>
        el(
          'tr',
          { dataset: { workflowId: r.workflow_id, status: r.status } },
          el('td', { className: 'mono', text: r.workflow_id }),
          el('td', {}, statusBadge(r.status)),
          el('td', { text: fmtTime(r.started_at) }),
          el('td', { text: summarizeActions(r.actions) }),
          el('td', { className: 'error-text', text: r.error ?? '' }),
        ),
      ),
    );
  showErasures(erasures.data);
  document.getElementById('archive-summary').textContent =
    `${archive.data.segments.length} segments (${archive.data.store} store)`;
  document
    .getElementById('archive-rows')
    .replaceChildren(
      ...archive.data.segments.map((s) =>
        el(
          'tr',
          { dataset: { segment: s.segment } },
          el('td', { className: 'mono', text: s.segment }),
          el('td', { text: s.rows }),
          el('td', { text: s.received_at ? `${fmtDay(s.received_at.min)} → ${fmtDay(s.received_at.max)}` : '—' }),
          el('td', { text: fmtBytes(s.bytes) }),
          el('td', { className: 'mono', text: s.sha256.slice(0, 12) }),
        ),
      ),
    );
}

function showErasures(list) {
  document.getElementById('erasure-rows').replaceChildren(
    ...list.map((e) =>
      el(
        'tr',
        { dataset: { erasureId: e.erasure_id, status: e.status } },
        el('td', { className: 'mono', text: e.erasure_id }),
        el('td', {}, statusBadge(e.status)),
        // The request holds the target kind, the field and a salted hash, never the value.
        el('td', { text: [e.request.target, e.request.field].filter(Boolean).join(' ') }),
        el('td', { text: e.requested_by ?? '—' }),
        el('td', { text: fmtTime(e.started_at) }),
      ),
    ),
  );
}

function erasureBody(dryRun) {
  const value = document.getElementById('erasure-value').value.trim();
  if (document.getElementById('erasure-kind').value === 'tenant') return { tenant_id: value, dry_run: dryRun };
  return { subject: { field: document.getElementById('erasure-field').value.trim(), value }, dry_run: dryRun };
}

async function erase(button, dryRun) {
  const box = document.getElementById('erasure-result');
  const result = await act(button, () => api('POST', '/erasure', erasureBody(dryRun)));
  if (!result) return;
  const r = result.data;
  box.hidden = false;
  box.textContent =
    r.status === 'dry_run'
      ? `Would erase ${r.counts.journal.rows} journal rows, ${r.counts.dlq.rows} dead letters, ` +
        `${r.counts.archive.rows} archived rows in ${r.counts.archive.segments} segments.`
      : `Erasure ${r.erasure_id} started.`;
  if (r.status !== 'dry_run') setTimeout(() => void refreshLifecycle().catch(report), 2000);
}

function summarizeActions(actions) {
  const counts = {};
  for (const a of actions) counts[a.action] = (counts[a.action] ?? 0) + 1;
  const parts = Object.entries(counts).map(([k, n]) => `${n} ${k.replaceAll('_', ' ')}`);
  return parts.length ? parts.join(', ') : 'nothing to do';
}

async function saveRetention(button) {
  const policies = {};
  for (const tr of document.querySelectorAll('#retention-rows tr')) {
    const value = tr.querySelector('input.days').value.trim();
    policies[tr.dataset.topic] = value === '' ? null : Number(value);
  }
  const result = await act(button, () => api('PUT', '/retention', { policies }));
  if (!result) return;
  notify('Retention saved: the next maintenance run applies it.');
  await refreshLifecycle().catch(report);
}

async function runMaintenance(button, dryRun) {
  const result = await act(button, () => api('POST', '/maintenance/run', { dry_run: dryRun }));
  if (!result) return;
  notify(`Maintenance ${dryRun ? 'dry run' : 'run'} started: ${result.data.workflow_id}.`);
  setTimeout(() => void refreshLifecycle().catch(report), 2000);
}

function setupLifecycle() {
  document.getElementById('lifecycle-refresh').addEventListener('click', () => void refreshLifecycle().catch(report));
  document.getElementById('retention-save').addEventListener('click', (e) => void saveRetention(e.target));
  document.getElementById('maintenance-run').addEventListener('click', (e) => void runMaintenance(e.target, false));
  document.getElementById('maintenance-dry-run').addEventListener('click', (e) => void runMaintenance(e.target, true));
  document.getElementById('erasure-preview').addEventListener('click', (e) => void erase(e.target, true));
  document.getElementById('erasure-run').addEventListener('click', (e) => void erase(e.target, false));
}
