// The live stream viewer (seed 003's Command Center): GET /crm-events over EventSource, newest first, the last
// 1000 events, pause/resume, filter, clear and JSONL download of the buffer.
'use strict';

const MAX_EVENTS = 1000;
const RETRY_MS = 5000;

/** One live view over the stream; `onEvent` is told of every domain event that arrives, shown or not. */
function createLiveStream({ onEvent = () => {} } = {}) {
  const list = document.getElementById('events');
  const empty = document.getElementById('events-empty');
  const stateEl = document.getElementById('stream-state');
  const stats = document.getElementById('stream-stats');
  const pauseButton = document.getElementById('pause');
  const filterInput = document.getElementById('filter');

  /** Newest first: { event, row, haystack } with haystack the lower-cased JSON the filter searches. */
  const buffer = [];
  const seen = new Set();
  let paused = false;
  let skipped = 0;
  let needle = '';
  let source;
  let retryTimer;
  let connected = false;

  function setState(state, label) {
    stateEl.dataset.state = state;
    stateEl.textContent = label;
  }
  function showState() {
    if (connected) setState(paused ? 'paused' : 'open', paused ? 'paused' : 'live');
  }

  function connect() {
    clearTimeout(retryTimer);
    if (source) source.close();
    connected = false;
    // EventSource cannot send headers, so the token rides in the query (the stream accepts ?access_token=).
    const url = auth.token ? `/crm-events?access_token=${encodeURIComponent(auth.token)}` : '/crm-events';
    const es = new EventSource(url);
    source = es;
    setState('connecting', 'connecting…');
    es.onmessage = (message) => {
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (frame.kind === 'connected') {
        connected = true;
        showState();
      } else if (frame.kind === 'domain_event') {
        receive(frame);
      } else if (frame.kind === 'dropped') {
        notify(
          `The stream dropped ${frame.count} events because this page fell behind; reconnecting fetches them.`,
          'error',
        );
        connect();
      } else if (frame.kind === 'error') {
        notify(`Live stream: ${frame.message}`, 'error');
      }
    };
    es.onerror = () => {
      if (es !== source) return;
      connected = false;
      // CONNECTING: the browser reconnects by itself, sending Last-Event-ID, so nothing is missed.
      if (es.readyState !== EventSource.CLOSED) return setState('connecting', 'reconnecting…');
      // CLOSED: the server refused (401, 403, 503): say why, and try again later with whatever token is set then.
      setState('error', 'refused');
      void explainRefusal(url);
      retryTimer = setTimeout(connect, RETRY_MS);
    };
  }

  /** Asks the stream once more with fetch to read why it refused (EventSource does not expose the answer). */
  async function explainRefusal(url) {
    const controller = new AbortController();
    try {
      const res = await fetch(url, { signal: controller.signal, headers: { accept: 'text/event-stream' } });
      if (res.ok) return;
      const body = await res.json().catch(() => ({}));
      const hint = res.status === 401 ? ': paste a token above' : '';
      notify(`Live stream refused (${res.status}): ${body.message || res.statusText}${hint}`, 'error');
    } catch {
      notify('Live stream: the API cannot be reached; retrying', 'error');
    } finally {
      controller.abort();
    }
  }

  function receive(event) {
    onEvent(event);
    if (seen.has(event.id)) return; // a reconnect can overlap what was already shown
    if (paused) {
      skipped += 1;
      return renderStats();
    }
    const row = renderEvent(event);
    const haystack = JSON.stringify(event).toLowerCase();
    row.hidden = !haystack.includes(needle);
    list.prepend(row);
    buffer.unshift({ event, row, haystack });
    seen.add(event.id);
    while (buffer.length > MAX_EVENTS) {
      const oldest = buffer.pop();
      oldest.row.remove();
      seen.delete(oldest.event.id);
    }
    renderStats();
  }

  function renderEvent(event) {
    const payload = JSON.stringify(event.payload);
    return el(
      'li',
      {
        className: event.replay_count > 0 ? 'event replay' : 'event',
        dataset: { id: String(event.id), replayCount: String(event.replay_count) },
      },
      el(
        'div',
        { className: 'meta' },
        el('strong', { className: 'mono', text: `#${event.id}` }),
        el('span', { className: 'muted', text: fmtTime(event.received_at) }),
        el('span', { className: 'badge', text: event.topic }),
        el('span', { text: `tenant ${event.tenant_id}` }),
        el('span', { className: 'muted mono', text: `p${event.partition ?? '-'}@${event.offset ?? '-'}` }),
        replayBadge(event.replay_count, event.replay_source),
      ),
      el('pre', { text: payload.length > 2000 ? `${payload.slice(0, 2000)}…` : payload }),
    );
  }

  function renderStats() {
    const shown = buffer.filter((b) => !b.row.hidden).length;
    Object.assign(stats.dataset, { buffered: buffer.length, shown, skipped });
    const parts = [needle ? `${shown} of ${buffer.length} shown` : `${buffer.length} events`];
    if (skipped) parts.push(`${skipped} skipped ${paused ? 'while paused' : 'during the last pause'}`);
    stats.textContent = parts.join(' · ');
    empty.hidden = buffer.length > 0;
    empty.textContent = paused ? 'Paused.' : 'Waiting for events…';
  }

  function togglePause() {
    paused = !paused;
    if (paused) skipped = 0;
    pauseButton.textContent = paused ? 'Resume' : 'Pause';
    pauseButton.classList.toggle('danger', paused);
    showState();
    renderStats();
  }

  function applyFilter() {
    needle = filterInput.value.trim().toLowerCase();
    for (const b of buffer) b.row.hidden = !b.haystack.includes(needle);
    renderStats();
  }

  function clear() {
    for (const b of buffer) b.row.remove();
    buffer.length = 0;
    seen.clear();
    skipped = 0;
    renderStats();
  }

  /** The whole buffer (not only what the filter shows), oldest first, one JSON object per line. */
  function download() {
    const lines = buffer.map((b) => JSON.stringify(b.event)).reverse();
    const blob = new Blob(
      lines.map((line) => `${line}\n`),
      { type: 'application/x-ndjson' },
    );
    const url = URL.createObjectURL(blob);
    const name = `crm-events-${new Date().toISOString().replace(/[:.]/g, '-')}.jsonl`;
    const link = el('a', { href: url, download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }

  pauseButton.addEventListener('click', togglePause);
  filterInput.addEventListener('input', applyFilter);
  document.getElementById('clear').addEventListener('click', clear);
  document.getElementById('download').addEventListener('click', download);
  renderStats();
  return { connect };
}
