// The DLQ groups panel (issue 13, point 1): dead letters counted per error class, topic and day, with bulk actions.
// Every action is a dry run first (counts), then a confirmation that starts the bulk workflow. Loaded before
// console.js, which refreshes it with the other panels.

const BULK_ACTIONS = ['retry', 'park', 'unpark', 'discard'];
/** The bulk action waiting for confirmation: { action, filter }. */
let pendingBulk;

async function refreshDlqGroups() {
  const { data } = await api('GET', '/dlq/groups?limit=50');
  const rows = data.map((g) => {
    const filter = { error_class: g.error_class, topic: g.topic, day: g.day };
    const open = g.by_status.pending + g.by_status.retrying + g.by_status.parked;
    return el(
      'tr',
      { dataset: { errorClass: g.error_class ?? '', topic: g.topic, day: g.day } },
      el('td', { className: 'mono', text: g.error_class ?? '—' }),
      el('td', { text: g.topic }),
      el('td', { text: g.day }),
      el('td', { text: `${g.count} (${open} open, ${g.by_status.parked} parked)` }),
      el('td', { text: `${fmtTime(g.oldest)} – ${fmtTime(g.newest)}` }),
      el('td', { className: 'mono', text: g.sample_ids.join(', ') }),
      el(
        'td',
        { className: 'actions' },
        ...BULK_ACTIONS.map((action) =>
          el('button', {
            className: `small bulk-${action}`,
            text: action,
            onclick: (ev) => void previewBulk(ev.target, action, filter),
          }),
        ),
      ),
    );
  });
  document.getElementById('dlq-group-rows').replaceChildren(...rows);
}

/** The dry run of an action on a group: counts, and the confirmation (a reason too, for discard). */
async function previewBulk(button, action, filter) {
  // Discard needs a reason even to count: the dry run is the request the confirmation will send.
  const result = await act(button, () =>
    api('POST', '/dlq/bulk', { action, filter, reason: 'preview', dry_run: true }),
  );
  if (!result) return;
  const r = result.data;
  pendingBulk = { action, filter };
  document.getElementById('dlq-bulk-summary').textContent =
    `${action}: ${r.eligible} of ${r.matched} dead letters of ${filter.error_class} on ${filter.topic}, ${filter.day}.`;
  const reason = document.getElementById('dlq-bulk-reason');
  reason.value = '';
  reason.hidden = action !== 'discard';
  document.getElementById('dlq-bulk-confirm').hidden = false;
}

async function confirmBulk(button) {
  if (!pendingBulk) return;
  const body = { ...pendingBulk, dry_run: false };
  const reason = document.getElementById('dlq-bulk-reason').value.trim();
  // No reason sent when none is typed: the API then says that discard needs one.
  if (body.action === 'discard' && reason) body.reason = reason;
  const result = await act(button, () => api('POST', '/dlq/bulk', body));
  if (!result) return;
  pendingBulk = undefined;
  document.getElementById('dlq-bulk-confirm').hidden = true;
  notify(`Bulk ${body.action} started: ${result.data.workflow_id} (${result.data.eligible} dead letters).`);
  await showReplay(result.data.workflow_id).catch(report);
  setTimeout(() => void Promise.all([refreshDlqGroups(), refreshDlq()]).catch(report), 1500);
}

function setupDlqGroups() {
  document.getElementById('dlq-groups-refresh').addEventListener('click', () => void refreshDlqGroups().catch(report));
  document.getElementById('dlq-bulk-run').addEventListener('click', (e) => void confirmBulk(e.target));
  document.getElementById('dlq-bulk-cancel').addEventListener('click', () => {
    pendingBulk = undefined;
    document.getElementById('dlq-bulk-confirm').hidden = true;
  });
}
