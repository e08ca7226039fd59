#!/usr/bin/env bash
# The whole test suite, against the real local stack (Postgres, Kafka, Temporal dev server and test server):
# compile, typecheck and lint, install the tools the tests call, bring the stack up, run every jest suite (two lanes,
# then the suites that must run alone; each jest process runs its suites in band).
# Extra arguments go to jest (e.g. `npm test -- --selectProjects unit`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n== %s\n' "$*" >&2; }

step "build, typecheck, lint, formatting"
npm run -s build
npx tsc -p tsconfig.json --noEmit
npx eslint .
npx prettier --check . >/dev/null || { npx prettier --check . ; exit 1; }

step "tools the tests drive (Debian: prometheus for promtool and the dashboard test, prometheus-alertmanager for amtool and the alert delivery test, chromium for the console test)"
missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
[[ -x /usr/bin/prometheus-alertmanager ]] || missing+=(prometheus-alertmanager)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
if ((${#missing[@]})); then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  # Under systemd the package starts its own Alertmanager on :9093, the native Kafka controller's port; the tests start
  # their own.
  if [[ " ${missing[*]} " == *" prometheus-alertmanager "* && -d /run/systemd/system ]]; then
    systemctl disable --now prometheus-alertmanager >/dev/null 2>&1 || true
  fi
fi

step "the deploy/ checkers (kubeconform, kustomize and the Kubernetes JSON schemas; built once, cached in .stack)"
bash scripts/k8s-tools.sh install

step "local stack"
bash scripts/stack.sh up
TEMPORAL_TEST_SERVER_PATH="$(bash scripts/stack.sh test-server-path)"
export TEMPORAL_TEST_SERVER_PATH

step "jest"
results=.stack/jest-results.json
# --forceExit: a suite that leaves a handle open (a client reconnecting after a fault) must not hang CI.
# What jest keeps per suite adds up in one process: at Node's default heap limit (about 4 GB here) a fresh-clone run
# died of heap exhaustion in its 155th suite, after slowing down in garbage collection; hence the larger heap.
run_jest() { node --max-old-space-size="$1" node_modules/jest/bin/jest.js --runInBand --forceExit --json "${@:2}"; }
status=0
if (($# > 0)); then
  run_jest 12288 --outputFile="$results" "$@" || status=$?
  parts=("$results")
else
  # The whole suite in two lanes, then the rest alone. One lane in band took 65 minutes, most of it waiting (sessions
  # expiring, alerts' `for`, restarts), which left too little of CI's 90 for the soak and the cluster suite. A suite runs
  # alone, after the lanes, when it stops, kills or takes over a shared part of the stack (a broker, Postgres, the
  # Temporal dev server, S3, the Alertmanager port, the stack itself) or bounds a stop or a group's timing in seconds,
  # which a busy neighbour could stretch.
  alone='test/(faults/(ingest-faults|replay-faults|stack|ingest-stop-frozen-peer|ingest-idle-stop-leaves|attack1[589]-[a-z-]+|attack2[1-9]-[a-z0-9-]+|attack3[0-2]-[a-z0-9-]+|attack33-erasure-start-no-deadline|attack38-(e2e-postgres-restart|barrier-send-timed-out-appended-later|barrier-killed-worker-send-appended-later)|attack39-(batch-replay-unfenced-commit-after-erasure|commit-timed-out-but-committed-doubled)|attack41-(lock-holder-client-waits|commit-coordinator-not-found)|attack42-[a-z-]+|ingest-frozen-mid-batch)'
  alone+='|integration/(postgres-outage|archive-s3|cli|start-stack-interrupt|alertmanager|service-lifecycle'
  alone+='|shutdown-timeout|lag-monitor|exactly-once|lock-beat|attack1[78]-[a-z-]+))\.test\.ts$'
  pids=()
  for lane in 1 2; do
    run_jest 8192 --shard="$lane/2" --testSequencer=./test/support/lane-sequencer.js --testPathIgnorePatterns "$alone" \
      --outputFile=".stack/jest-lane$lane.json" >".stack/jest-lane$lane.log" 2>&1 &
    pids+=($!)
  done
  for lane in 1 2; do
    wait "${pids[$((lane - 1))]}" || status=$?
    step "jest lane $lane of 2" && cat ".stack/jest-lane$lane.log"
  done
  step "jest: the suites that run alone"
  run_jest 12288 --testPathPatterns "$alone" --outputFile=".stack/jest-alone.json" || status=$?
  parts=(.stack/jest-lane1.json .stack/jest-lane2.json .stack/jest-alone.json)
fi
# One plain closing line that any CI can read.
node -e '
  const parts = process.argv.slice(1).map((file) => require(file));
  const sum = (key) => parts.reduce((n, r) => n + r[key], 0);
  const skipped = sum("numPendingTests");
  console.log(`${sum("numPassedTests")} passed, ${sum("numFailedTests")} failed` + (skipped ? `, ${skipped} skipped` : ""));
' "${parts[@]/#/$PWD/}" || true
exit "$status"
