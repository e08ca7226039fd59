# shellcheck shell=bash
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
    # A postmaster runs in its data directory, but only once it has started: right after launch its cwd is still /,
    # so the process we launched is also recognised by the data directory on its command line (-D).
    if [[ $pid =~ ^[0-9]+$ ]] && { [[ $(readlink "/proc/$pid/cwd" 2>/dev/null) == "$PGDATA_DIR" ]] ||
      tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-D $PGDATA_DIR"; }; then
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

