# shellcheck shell=bash
# ================================================================== cluster profile: the service's own processes
# Two of each kind, from the compiled CLI (dist/, `npm run build`): ingest-1/2 in one consumer group, worker-1/2 on one
# task queue, api-1/2 on two ports (rate limits and idempotency keys live in Postgres, so they are shared). Every
# process gets the profile's addresses; one `migrate` runs first (schema, topics with 6 partitions and 3 replicas).

CLI_JS="$REPO_DIR/dist/cli/main.js"
APP_MEMBERS=(ingest-1 ingest-2 worker-1 worker-2 api-1 api-2)
# Started only when asked for (`stack.sh start ingest-3 --profile cluster`: scaling ingest out); stopped by `down`.
SCALE_MEMBERS=(ingest-3)

# The environment every process of the profile shares; whatever the caller's environment says about addresses is
# replaced (a .env aimed at the default stack must not send the cluster's processes there). The fault suite kills
# brokers: a consumer that kafkajs leaves hanging is restarted after 60 s without progress, not the default 120.
cluster_app_env() {
  printf '%s\n' \
    "DATABASE_URL=postgres://crm_events:crm_events@127.0.0.1:$PG_PORT/crm_events" \
    "KAFKA_BROKERS=$(cluster_bootstrap)" \
    "KAFKA_TOPIC_PARTITIONS=6" \
    "KAFKA_TOPIC_REPLICATION_FACTOR=3" \
    "TEMPORAL_ADDRESS=127.0.0.1:$CLUSTER_TEMPORAL_PORT" \
    "TEMPORAL_NAMESPACE=default" \
    "TEMPORAL_UI_URL=http://127.0.0.1:$CLUSTER_TEMPORAL_UI_PORT" \
    "ARCHIVE_STORE=local" \
    "ARCHIVE_DIR=$STACK_DIR/archive" \
    "API_TLS_DIR=$STACK_DIR/tls" \
    "INGEST_WATCHDOG_SECONDS=60"
}

# member_port NAME: the API port of api-n, the metrics port of ingest-n and worker-n.
member_port() {
  local n=${1##*-}
  case $1 in
    ingest-*) echo "${CLUSTER_INGEST_METRICS_PORTS[$n - 1]}" ;;
    worker-*) echo "${CLUSTER_WORKER_METRICS_PORTS[$n - 1]}" ;;
    api-*) echo "${CLUSTER_API_PORTS[$n - 1]}" ;;
  esac
}
# The marker that tells our process from a recycled pid: its own --title-like argument on the command line.
member_marker() { echo "--cluster-member=$1@$STACK_DIR"; }
member_alive() { pid_file_pid "$1" "$(member_marker "$1")"; }

# Ready: the API answers /healthz; ingest logged that it consumes; a worker that it polls its task queue (both since
# this launch: the log keeps earlier runs).
member_ready() {
  local name=$1
  case $name in
    api-*) http_status_line "$(member_port "$name")" /healthz | grep -q ' 200' ;;
    ingest-*) tail -c "+${MEMBER_LOG_OFFSET[$name]:-1}" "$LOGS/$name.log" 2>/dev/null | grep -q 'CRM Events Sink started' ;;
    worker-*) tail -c "+${MEMBER_LOG_OFFSET[$name]:-1}" "$LOGS/$name.log" 2>/dev/null | grep -q 'Temporal worker started' ;;
  esac
}

migrate_cluster() {
  [[ -f $CLI_JS ]] || die "apps: $CLI_JS is missing; run \`npm run build\` first"
  say "apps: migrate (schema, topics: 6 partitions, 3 replicas)"
  local envs
  mapfile -t envs < <(cluster_app_env)
  env "${envs[@]}" LOG_LEVEL=warn node --max-old-space-size=256 "$CLI_JS" migrate >>"$LOGS/migrate.log" 2>&1 \
    || { tail -n 20 "$LOGS/migrate.log" >&2; die "apps: migrate failed (see $LOGS/migrate.log)"; }
}

declare -A MEMBER_LOG_OFFSET=()
STARTED_MEMBERS=()

start_members() {
  local name port kind envs
  mapfile -t envs < <(cluster_app_env)
  STARTED_MEMBERS=()
  for name in "$@"; do
    if member_alive "$name"; then say "$name: already running"; continue; fi
    port=$(member_port "$name")
    port_open "$port" && die "$name: port $port is taken by something this script did not start: $(port_owner "$port")"
    kind=${name%-*}
    local own=("KAFKA_CLIENT_ID=crm-events-sink-$name")
    case $kind in
      api) own+=("API_PORT=$port") ;;
      *) own+=("METRICS_PORT=$port") ;;
    esac
    MEMBER_LOG_OFFSET[$name]=$(($(stat -c %s "$LOGS/$name.log" 2>/dev/null || echo 0) + 1))
    say "$name: starting ($kind, port $port)"
    launch "$name" "$LOGS/$name.log" env "${envs[@]}" "${own[@]}" node --max-old-space-size=256 \
      "$CLI_JS" "$kind" "$(member_marker "$name")"
    STARTED_MEMBERS+=("$name")
  done
}

await_members() {
  local name
  for name in "${STARTED_MEMBERS[@]}"; do
    wait_ready "$name" "$LOGS/$name.log" "member_alive $name" "member_ready $name"
    say "$name: up (port $(member_port "$name"))"
  done
}

# All at once: each process finishes its own work in flight (within SHUTDOWN_TIMEOUT) and none waits for another.
down_members() {
  local name pid pids=()
  for name in "$@"; do
    if pid=$(owned_pid "$name" "$(member_marker "$name")"); then pids+=("$pid"); fi
  done
  ((${#pids[@]})) || { say "apps: none running"; return 0; }
  say "apps: stopping $* (SIGTERM: graceful)"
  signal_and_wait apps TERM "${pids[@]}"
  for name in "$@"; do rm -f "$RUN/$name.pid"; done
}
