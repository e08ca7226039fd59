// Splits the suites between CI's jest lanes (scripts/test.sh, --shard=i/n) by how long each took in a fresh-clone run
// (suite-seconds.json; a suite not listed counts SUITE_SECONDS_UNKNOWN), longest first onto the lane with the least so
// far, so that the lanes end together; jest's own split hashes the paths and left one lane 70% longer. Within a lane
// the order is jest's.
const path = require('node:path');
const Sequencer = require('@jest/test-sequencer').default;
const seconds = require('./suite-seconds.json');

const SUITE_SECONDS_UNKNOWN = 10;
const root = path.resolve(__dirname, '../..');
const weight = (test) => seconds[path.relative(root, test.path)] ?? SUITE_SECONDS_UNKNOWN;

class LaneSequencer extends Sequencer {
  shard(tests, { shardIndex, shardCount }) {
    const lanes = Array.from({ length: shardCount }, () => ({ total: 0, tests: [] }));
    const byWeight = [...tests].sort((a, b) => weight(b) - weight(a) || a.path.localeCompare(b.path));
    for (const test of byWeight) {
      const lane = lanes.reduce((least, l) => (l.total < least.total ? l : least));
      lane.total += weight(test);
      lane.tests.push(test);
    }
    return lanes[shardIndex - 1].tests;
  }
}

module.exports = LaneSequencer;
