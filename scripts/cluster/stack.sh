#!/usr/bin/env bash
# The cluster profile of the local stack (`stack.sh <command> --profile cluster`): the production topology on one
# machine, beside the default stack and on other ports.
#   postgres         its own PostgreSQL 15 cluster (scripts/stack/postgres.sh) on 127.0.0.1:5456: crm_events for the
#                    service, temporal and temporal_visibility for the Temporal server
#   kafka-1..3       three KRaft brokers (each also a controller of the quorum) on 127.0.0.1:19092, :19192, :19292;
#                    replication factor 3, min.insync.replicas 2, 6 partitions (scripts/cluster/kafka.sh)
#   temporal-server  the real Temporal server on 127.0.0.1:17233, built from the Go module proxy, SQL persistence
#   temporal-ui      the Temporal Web UI on http://127.0.0.1:18233 (scripts/cluster/temporal.sh)
#   ingest-1, -2     two ingest processes in one consumer group (metrics :19105, :19205); ingest-3 (:19305) only
#                    when started by name
#   worker-1, -2     two Temporal workers on one task queue (metrics :19115, :19215)
#   api-1, -2        two API processes on http://127.0.0.1:19106 and :19206 (scripts/cluster/apps.sh)
#
# Usage (through scripts/stack.sh or `npm run cli -- stack <command> --profile cluster`):
#   up       build/download what is missing (first time: the Temporal server, see temporal.sh), start everything, wait
#   down     stop everything this profile started (the service's processes first, Postgres last)
#   status   one line per member: name, address, pid, up|down (ingest-3 only while it runs)
#   kill <member>     SIGKILL one member (fault tests); `start` or `up` brings it back with its data
#   stop <member>     stop one member gracefully (SIGTERM; SIGKILL after 20 s)
#   start <member>    start one member that is not running and wait until it is ready
#   restart <member>  stop, then start (a rolling restart is one restart per member)
# Members: postgres, kafka-1..3, temporal-server, temporal-ui, ingest-1..3, worker-1, worker-2, api-1, api-2. A service
# process is started only when what it needs is up.
#
# State lives in $STACK_CLUSTER_DIR (default <repo>/.stack/cluster), downloads and builds in $STACK_CACHE_DIR (default
# <repo>/.stack, shared with the default profile: same Kafka jars, same `temporal` CLI). The service's processes run
# dist/cli/main.js: `npm run build` first. Their environment for a client of the cluster:
#   DATABASE_URL=postgres://crm_events:crm_events@127.0.0.1:5456/crm_events
#   KAFKA_BROKERS=127.0.0.1:19092,127.0.0.1:19192,127.0.0.1:19292 TEMPORAL_ADDRESS=127.0.0.1:17233
#   CRM_EVENTS_API_URL=http://127.0.0.1:19106
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# Its own variable: STACK_DIR, if set, names a default-profile instance.
export STACK_DIR="${STACK_CLUSTER_DIR:-$REPO_DIR/.stack/cluster}"
mkdir -p "$STACK_DIR"
export STACK_CACHE_DIR="${STACK_CACHE_DIR:-$REPO_DIR/.stack}"
export STACK_PG_PORT="${STACK_PG_PORT:-5456}"
CLUSTER_CONF="$REPO_DIR/scripts/cluster"

CLUSTER_KAFKA_PORTS=(19092 19192 19292)
CLUSTER_CONTROLLER_PORTS=(19093 19193 19293)
# frontend gRPC, frontend membership, frontend HTTP, history gRPC + membership, matching, worker (scripts/cluster/temporal.sh)
CLUSTER_TEMPORAL_PORTS=(17233 16933 17243 17234 16934 17235 16935 17239 16939)
CLUSTER_TEMPORAL_PORT=${CLUSTER_TEMPORAL_PORTS[0]}
CLUSTER_TEMPORAL_UI_PORT=18233
CLUSTER_INGEST_METRICS_PORTS=(19105 19205 19305)
CLUSTER_WORKER_METRICS_PORTS=(19115 19215)
CLUSTER_API_PORTS=(19106 19206)

# shellcheck source=../stack/common.sh
source "$REPO_DIR/scripts/stack/common.sh"
# shellcheck source=../stack/postgres.sh
source "$REPO_DIR/scripts/stack/postgres.sh"
# shellcheck source=../stack/kafka.sh
source "$REPO_DIR/scripts/stack/kafka.sh"
# shellcheck source=../stack/temporal.sh
source "$REPO_DIR/scripts/stack/temporal.sh"
# shellcheck source=kafka.sh
source "$CLUSTER_CONF/kafka.sh"
# shellcheck source=temporal.sh
source "$CLUSTER_CONF/temporal.sh"
# shellcheck source=apps.sh
source "$CLUSTER_CONF/apps.sh"

cmd_up() {
  local began=$SECONDS pg_started=
  install_postgres
  install_kafka
  install_temporal_server
  # Postgres and the three JVMs start together; the Temporal server needs Postgres, the service's processes need all.
  start_postgres && pg_started=1
  start_brokers
  [[ -n $pg_started ]] && await_postgres
  local ts_started= ui_started=
  temporal_server_alive || { start_temporal_server; ts_started=1; }
  await_brokers
  if [[ -n $ts_started ]] || ! temporal_server_ready; then await_temporal_server; fi
  start_temporal_ui && ui_started=1
  [[ -n $ui_started ]] && await_temporal_ui
  migrate_cluster
  start_members "${APP_MEMBERS[@]}"
  await_members
  say "cluster: up in $((SECONDS - began)) s"
  cmd_status >&2
}

cmd_down() {
  down_members "${APP_MEMBERS[@]}" "${SCALE_MEMBERS[@]}"
  down_temporal_ui
  down_temporal_server
  down_brokers
  down_postgres
}

status_line() { printf '%-16s %-28s %-8s %s\n' "$@"; }
pid_of() { owned_pid "$1" "$2" 2>/dev/null || echo -; }

cmd_status() {
  local n name state
  status_line MEMBER ADDRESS PID STATE
  pg_ready && state=up || state=down
  status_line postgres "127.0.0.1:$PG_PORT" "$(pg_postmaster_pid 2>/dev/null || echo -)" "$state"
  for n in 1 2 3; do
    broker_probe "$n" && state=up || state=down
    status_line "kafka-$n" "127.0.0.1:$(broker_port "$n")" "$(pid_of "kafka-$n" "$(broker_props "$n")")" "$state"
  done
  temporal_server_ready && state=up || state=down
  status_line temporal-server "127.0.0.1:$CLUSTER_TEMPORAL_PORT" "$(pid_of temporal-server "$TEMPORAL_SERVER_CONFIG")" "$state"
  if [[ -x $TEMPORAL_UI_BIN ]]; then
    temporal_ui_ready && state=up || state=down
    status_line temporal-ui "http://127.0.0.1:$CLUSTER_TEMPORAL_UI_PORT" "$(pid_of temporal-ui "$TEMPORAL_UI_HOME")" "$state"
  else
    [[ -f $TEMPORAL_UI_BIN.failed ]] && state="not built here (see $LOGS/temporal-ui-install.log); the temporal CLI instead" \
      || state="not built yet (built by up)"
    status_line temporal-ui - - "$state"
  fi
  for name in "${APP_MEMBERS[@]}" "${SCALE_MEMBERS[@]}"; do
    [[ " ${SCALE_MEMBERS[*]} " == *" $name "* ]] && ! member_alive "$name" && continue
    # Ingest and worker: the process runs and serves its metrics; the API: /healthz answers.
    state=down
    if member_alive "$name"; then
      case $name in
        api-*) member_ready "$name" && state=up ;;
        *) port_open "$(member_port "$name")" && state=up ;;
      esac
    fi
    status_line "$name" "127.0.0.1:$(member_port "$name")" "$(pid_of "$name" "$(member_marker "$name")")" "$state"
  done
}

# ================================================================== one member

MEMBERS=(postgres kafka-1 kafka-2 kafka-3 temporal-server temporal-ui "${APP_MEMBERS[@]}" "${SCALE_MEMBERS[@]}")

check_member() {
  [[ " ${MEMBERS[*]} " == *" $1 "* ]] || die "unknown cluster member '$1' (expected: ${MEMBERS[*]})"
}

member_kill() {
  case $1 in
    postgres) kill_postgres ;;
    kafka-*) kill_broker "${1#kafka-}" ;;
    temporal-server) kill_owned temporal-server "$TEMPORAL_SERVER_CONFIG" ;;
    temporal-ui) kill_owned temporal-ui "$TEMPORAL_UI_HOME" ;;
    *) kill_owned "$1" "$(member_marker "$1")" ;;
  esac
}

member_stop() {
  case $1 in
    postgres) down_postgres ;;
    kafka-*) stop_broker "${1#kafka-}" ;;
    temporal-server) down_temporal_server ;;
    temporal-ui) down_temporal_ui ;;
    *) down_members "$1" ;;
  esac
}

# What a service process needs before it can start: the profile's Postgres, brokers and Temporal server.
require_backends() {
  local n
  pg_ready || die "$1: postgres is not up; run \`stack.sh up --profile cluster\`"
  for n in 1 2 3; do broker_probe "$n" || die "$1: kafka-$n is not up; start it first"; done
  temporal_server_ready || die "$1: temporal-server is not up; start it first"
}

member_start() {
  case $1 in
    postgres) if start_postgres; then await_postgres; fi ;;
    kafka-*) start_broker "${1#kafka-}" ;;
    temporal-server)
      temporal_server_alive && { say "$1: already running"; return 0; }
      start_temporal_server
      await_temporal_server ;;
    temporal-ui) if start_temporal_ui; then await_temporal_ui; fi ;;
    *)
      require_backends "$1"
      start_members "$1"
      await_members ;;
  esac
}

main() {
  local cmd=${1:-status}
  case $cmd in
    kill | stop | start | restart)
      (($# == 2)) || die "usage: stack.sh $cmd <member> --profile cluster"
      check_member "$2"
      lock
      case $cmd in
        kill) member_kill "$2" ;;
        stop) member_stop "$2" ;;
        start) member_start "$2" ;;
        restart) member_stop "$2"; member_start "$2" ;;
      esac
      return 0 ;;
  esac
  (($# <= 1)) || die "only kill, stop, start and restart take a member name (usage: stack.sh up|down|status --profile cluster)"
  case $cmd in
    up) lock; cmd_up ;;
    down) lock; cmd_down ;;
    status) cmd_status ;;
    -h | --help | help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" ;;
    *) die "unknown command '$cmd' for the cluster profile (up, down, status, kill, stop, start, restart)" ;;
  esac
}

main "$@"
