#!/usr/bin/env bash
# The whole test suite, against the real local stack (Postgres, Kafka, Temporal dev server and test server):
# compile, typecheck and lint, install the tools the tests call, bring the stack up, run every jest suite in band.
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
status=0
# --forceExit: a suite that leaves a handle open (a client reconnecting after a fault) must not hang CI.
# One process runs every suite in band, and what jest keeps per suite adds up: at Node's default heap limit (about
# 4 GB here) a fresh-clone run died of heap exhaustion in its 155th suite, after slowing down in garbage collection.
# The machine has 24 GB; 12 GB for the runner leaves the stack and the services the tests start more than enough.
node --max-old-space-size=12288 node_modules/jest/bin/jest.js --runInBand --forceExit --json --outputFile="$results" "$@" || status=$?
# One plain closing line that any CI can read.
node -e '
  const r = require(process.argv[1]);
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed` + (r.numPendingTests ? `, ${r.numPendingTests} skipped` : ""));
' "$PWD/$results" || true
exit "$status"
