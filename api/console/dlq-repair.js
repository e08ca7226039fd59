// Edit-and-retry of one dead letter (POST /dlq/repair): a JSON Patch or a whole value, previewed (before, after,
// diff, would it journal?) and then applied. Loaded after util.js; console.js opens it from the DLQ table.

/** Opens the dialog for one entry, with its current value shown by a preview of an empty edit. */
async function openRepair(id) {
  const dialog = document.getElementById('repair-dialog');
  dialog.dataset.id = String(id);
  document.getElementById('repair-title').textContent = `Edit and retry DLQ entry #${id}`;
  document.getElementById('repair-result').hidden = true;
  document.getElementById('repair-apply').disabled = true;
  dialog.showModal();
  const preview = await act(document.getElementById('repair-preview'), () =>
    api('POST', '/dlq/repair', { ids: [id], value: {}, dry_run: true }),
  );
  const before = preview && preview.data.entries[0] ? preview.data.entries[0].before : null;
  document.getElementById('repair-mode').value = before === null ? 'value' : 'patch';
  document.getElementById('repair-edit').value =
    before === null ? JSON.stringify({}, null, 2) : '[\n  {"op": "add", "path": "/tenant_id", "value": ""}\n]';
  document.getElementById('repair-before').textContent = before === null ? '(not JSON)' : pretty(before);
}

/** The request body of the dialog's edit, or an error notice when the edit is not JSON. */
function repairBody(dryRun) {
  const id = Number(document.getElementById('repair-dialog').dataset.id);
  const mode = document.getElementById('repair-mode').value;
  let edit;
  try {
    edit = JSON.parse(document.getElementById('repair-edit').value);
  } catch (err) {
    throw new Error(`The ${mode === 'patch' ? 'patch' : 'value'} is not JSON: ${err.message}`);
  }
  return { ids: [id], [mode]: edit, ...(dryRun ? { dry_run: true } : {}) };
}

async function previewRepair(button) {
  const result = await act(button, () => api('POST', '/dlq/repair', repairBody(true)));
  if (!result) return;
  const entry = result.data.entries[0];
  const box = document.getElementById('repair-result');
  box.replaceChildren(
    el('p', {
      className: entry.would_journal ? 'ok-text' : 'error-text',
      text: entry.would_journal ? 'Would journal.' : `Would not journal: ${entry.error}`,
    }),
    el('div', { className: 'repair-diff' }, el('h4', { text: 'Diff' }), el('pre', { text: pretty(entry.diff) })),
    el('div', { className: 'repair-after' }, el('h4', { text: 'After' }), el('pre', { text: pretty(entry.after) })),
  );
  box.dataset.wouldJournal = String(entry.would_journal);
  box.hidden = false;
  document.getElementById('repair-apply').disabled = !entry.would_journal;
}

async function applyRepair(button) {
  const result = await act(button, () => api('POST', '/dlq/repair', repairBody(false)));
  if (!result) return;
  const r = result.data;
  const outcome =
    r.status === 'accepted' ? `accepted as ${r.repair_id}` : `journaled ${r.journaled}, refused ${r.invalid}`;
  notify(`Repair of DLQ entry #${document.getElementById('repair-dialog').dataset.id}: ${outcome}.`);
  document.getElementById('repair-dialog').close();
  await refreshDlq().catch(report);
}

function pretty(value) {
  return JSON.stringify(value, null, 2);
}

document.getElementById('repair-preview').addEventListener('click', (ev) => void previewRepair(ev.target));
document.getElementById('repair-apply').addEventListener('click', (ev) => void applyRepair(ev.target));
document
  .getElementById('repair-close')
  .addEventListener('click', () => document.getElementById('repair-dialog').close());
