#!/usr/bin/env node
import { createLogger } from '../shared/logger';
import { dlqCommand } from './commands/dlq';
import { exportCommand } from './commands/export';
import { migrateCommand } from './commands/migrate';
import { produceCommand } from './commands/produce';
import { replayCommand } from './commands/replay';
import { serve } from './commands/serve';
import { stackCommand } from './commands/stack';
import { tokenCommand } from './commands/token';

const USAGE = `Usage: crm-events-sink <command> [options]

Service
  start [--stack]   ingest + Temporal worker + API in one process (--stack: bring the local stack up and migrate first)
  ingest            Kafka -> event_journal consumer, metrics on :9105
  worker            Temporal worker for replay and DLQ retry workflows
  api               HTTP API on :9106
  migrate           apply sql/ migrations and create the Kafka topics

Operations (through the API; CRM_EVENTS_API_URL, CRM_EVENTS_TOKEN)
  replay <id> | batch <ids...> | range --start --end ... | status|pause|resume|cancel <workflow-id>
  dlq list | groups | bulk retry|discard|park|unpark [--class --topic --day --reason --yes] | retry <id>
  dlq schedule show|pause|unpause|trigger|interval <dur>
  export --out FILE [--tenant] [--topic] [--since] [--until] [--payload-filter] [--gzip]   journal rows as NDJSON

Tools
  produce           publish test traffic (produce --help)
  stack up|down|status|kill <component>   the Docker-free local Postgres, Kafka, Temporal and S3 (and, when named,
                                          Alertmanager: stack up alertmanager)
  stack up|down|status --profile cluster  three Kafka brokers, the Temporal server on Postgres, two ingest, worker
                                          and API processes (README: The cluster profile)
  token [--role operator] [--tenant T] [--ttl 3600]   mint a bearer token (needs AUTH_JWT_SECRET)

Configuration comes from environment variables; see .env.example.`;

const commands: Record<string, (argv: string[]) => Promise<void>> = {
  start: (argv) => serve(['ingest', 'worker', 'api'], { stack: argv.includes('--stack'), prepare: true }),
  ingest: () => serve(['ingest']),
  worker: () => serve(['worker']),
  api: () => serve(['api']),
  migrate: () => migrateCommand(),
  produce: (argv) => produceCommand(argv),
  stack: (argv) => stackCommand(argv),
  token: (argv) => tokenCommand(argv),
  replay: (argv) => replayCommand(argv),
  dlq: (argv) => dlqCommand(argv),
  export: (argv) => exportCommand(argv),
};

async function run(): Promise<void> {
  const [name, ...argv] = process.argv.slice(2);
  const command = name ? commands[name] : undefined;
  if (!command) {
    console.error(USAGE);
    process.exitCode = name && !['help', '--help', '-h'].includes(name) ? 2 : 0;
    return;
  }
  await command(argv);
}

/** Commands a person runs at a terminal: their errors are one plain line on stderr, not a JSON log record. */
const TOOLS = new Set(['replay', 'dlq', 'export', 'produce', 'token', 'stack']);

run().catch((err: Error) => {
  if (err.name === 'ConfigError') {
    console.error(err.message);
    process.exit(2);
  }
  if (TOOLS.has(process.argv[2] ?? '')) console.error(`error: ${err.message}`);
  else createLogger('info', 'cli').fatal({ err }, err.message);
  process.exit(1);
});
