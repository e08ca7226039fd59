import { parseArgs } from 'node:util';
import { SingleBar, Presets } from 'cli-progress';
import { CompressionTypes } from 'kafkajs';
import { loadConfig } from '../../shared/config';
import { createKafka, createProducer } from '../../shared/kafka';
import { createLogger } from '../../shared/logger';
import { makeEvent } from '../traffic';

const HELP = `Usage: crm-events-sink produce [--count N] [--rate EVENTS_PER_S] [--tenants N] [--topic TOPIC]
Publishes realistic ApexFlow lead/job events for test traffic.
  --count     how many events (default 100)
  --rate      events per second; 0 = as fast as possible (default 0)
  --tenants   how many tenants to spread them over (default 5)
  --topic     only this topic (default: leads and jobs, 2:1)`;

/** `produce`: test traffic, by count or at a rate, with a progress bar on stderr. */
export async function produceCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      count: { type: 'string', default: '100' },
      rate: { type: 'string', default: '0' },
      tenants: { type: 'string', default: '5' },
      topic: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return void console.log(HELP);
  const count = positiveInt('--count', values.count);
  const tenants = positiveInt('--tenants', values.tenants);
  const rate = Number(values.rate);
  if (!Number.isFinite(rate) || rate < 0) throw new Error(`--rate must be a number >= 0, got "${values.rate}"`);

  const config = loadConfig();
  const producer = createProducer(createKafka(config.kafka.brokers, config.kafka.clientId, createLogger('warn')));
  await producer.connect();
  const bar = new SingleBar(
    {
      format: 'produce [{bar}] {value}/{total} events | {eta_formatted} left',
      stream: process.stderr,
      noTTYOutput: true,
      notTTYSchedule: 1000,
    },
    Presets.shades_classic,
  );
  bar.start(count, 0);
  const started = Date.now();
  const chunk = rate > 0 ? Math.max(1, Math.min(500, Math.round(rate / 10))) : 500;
  try {
    for (let sent = 0; sent < count;) {
      const n = Math.min(chunk, count - sent);
      const events = Array.from({ length: n }, (_, i) => makeEvent(sent + i, tenants, values.topic));
      const byTopic = new Map<string, { key: string; value: string }[]>();
      for (const e of events) byTopic.set(e.topic, [...(byTopic.get(e.topic) ?? []), { key: e.key, value: e.value }]);
      await producer.sendBatch({
        acks: -1,
        compression: CompressionTypes.None,
        topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
      });
      sent += n;
      bar.update(sent);
      if (rate > 0) {
        const due = started + (sent / rate) * 1000;
        if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
      }
    }
  } finally {
    bar.stop();
    await producer.disconnect();
  }
  const seconds = (Date.now() - started) / 1000;
  console.log(`Produced ${count} events for ${tenants} tenant(s) in ${seconds.toFixed(1)} s`);
}

function positiveInt(flag: string, raw: string | undefined): number {
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${flag} must be a whole number >= 1, got "${raw}"`);
  return n;
}
