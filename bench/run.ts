import { apiBench } from './api';
import { apiPoolBench } from './api-pool';
import { ingestBench } from './ingest';
import { partitionsBench } from './partitions';
import { payloadFilterBench } from './payload-filter';
import type { BenchOptions } from './options';
import { perKeyReplayBench } from './per-key-replay';
import { rangeReplayBench } from './range-replay';
import { replayLatencyBench } from './replay-latency';
import { shardedReplayBench } from './sharded-replay';

const BENCHMARKS: Record<string, (opts: BenchOptions) => Promise<void>> = {
  ingest: ingestBench,
  'replay-latency': replayLatencyBench,
  'range-replay': rangeReplayBench,
  api: apiBench,
  partitions: partitionsBench,
  'api-pool': apiPoolBench,
  'payload-filter': payloadFilterBench,
  'sharded-replay': shardedReplayBench,
  'per-key-replay': perKeyReplayBench,
};

const USAGE = `Usage: node dist/bench/run.js [${Object.keys(BENCHMARKS).join('|')} ...] [--events N] [--repeat K] [--profile default|cluster]`;

function parseArgs(argv: string[]): { names: string[]; opts: BenchOptions } {
  const names: string[] = [];
  const opts: BenchOptions = { repeat: 3, profile: 'default' };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const number = () => {
      const value = Number(argv[++i]);
      if (!Number.isInteger(value) || value < 1) throw new Error(`${arg} needs a positive whole number\n${USAGE}`);
      return value;
    };
    if (arg === '--events') opts.events = number();
    else if (arg === '--repeat') opts.repeat = number();
    else if (arg === '--profile') {
      const profile = argv[++i];
      if (profile !== 'default' && profile !== 'cluster') throw new Error(`--profile is default or cluster\n${USAGE}`);
      opts.profile = profile;
    } else if (BENCHMARKS[arg]) names.push(arg);
    else throw new Error(`Unknown argument "${arg}"\n${USAGE}`);
  }
  return { names: names.length ? names : Object.keys(BENCHMARKS), opts };
}

/** Runs the named benchmarks (all by default) one after the other; each writes bench/results/<name>.json. */
async function run(): Promise<void> {
  const { names, opts } = parseArgs(process.argv.slice(2));
  for (const name of names) {
    console.log(`== ${name} (repeat ${opts.repeat})`);
    await BENCHMARKS[name](opts);
  }
}

run().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(err.stack ?? err.message);
    process.exit(1);
  },
);
