# shellcheck shell=bash
# ================================================================== Alertmanager (optional: `stack.sh up alertmanager`)
# Prometheus Alertmanager from Debian's package prometheus-alertmanager (apt-get install when missing), running
# monitoring/alertmanager.yml on 127.0.0.1:$ALERTMANAGER_PORT. Not in the default set: the native stack has no
# Prometheus of its own, and the service runs without either. Its default port is 9095, not the usual 9093, which is
# the Kafka controller's here (STACK_KAFKA_CONTROLLER_PORT). Single instance: clustering (gossip on :9094) is off.
# Alertmanager reads no environment variables, so the configuration is copied to $ALERTMANAGER_HOME at each start with
# the default webhook URL replaced by ALERT_WEBHOOK_URL when that is set.

ALERTMANAGER_BIN=/usr/bin/prometheus-alertmanager
ALERTMANAGER_LOG="$LOGS/alertmanager.log"
ALERTMANAGER_HOME="$STACK_DIR/alertmanager"
ALERTMANAGER_CONFIG="$ALERTMANAGER_HOME/alertmanager.yml"
# The receiver URL written in monitoring/alertmanager.yml; test/unit/alertmanager.test.ts keeps the two in step.
DEFAULT_ALERT_WEBHOOK_URL=http://127.0.0.1:5001/alerts

install_alertmanager() {
  [[ -x $ALERTMANAGER_BIN ]] && return 0
  say "alertmanager: installing the Debian package prometheus-alertmanager"
  apt_install prometheus-alertmanager
  # Under systemd the package starts its own on :9093, the Kafka controller's port here; this stack runs its own.
  [[ -d /run/systemd/system ]] && { systemctl disable --now prometheus-alertmanager >/dev/null 2>&1 || true; }
  return 0
}

alertmanager_alive() { pid_file_pid alertmanager "$ALERTMANAGER_CONFIG"; }
alertmanager_ready() { [[ $(http_status_line $ALERTMANAGER_PORT /-/ready) == "HTTP/1."?" 200"* ]]; }

# The configuration with ALERT_WEBHOOK_URL in place of the default URL (quoted replacement: an & in the URL stays one).
render_alertmanager_config() {
  local text url=${ALERT_WEBHOOK_URL:-$DEFAULT_ALERT_WEBHOOK_URL}
  text=$(<"$REPO_DIR/monitoring/alertmanager.yml")
  printf '%s\n' "${text//"$DEFAULT_ALERT_WEBHOOK_URL"/"$url"}" >"$ALERTMANAGER_CONFIG.tmp"
  mv "$ALERTMANAGER_CONFIG.tmp" "$ALERTMANAGER_CONFIG"
  say "alertmanager: webhook receiver $url"
}

start_alertmanager() {
  if alertmanager_alive; then
    if alertmanager_ready; then say "alertmanager: already up (127.0.0.1:$ALERTMANAGER_PORT)"; return 1; fi
    say "alertmanager: started earlier and not ready yet; waiting"; return 0
  fi
  takeover_sibling alertmanager
  if alertmanager_ready; then
    say "alertmanager: 127.0.0.1:$ALERTMANAGER_PORT already served by an Alertmanager not started from $STACK_DIR; using it"
    return 1
  fi
  port_open $ALERTMANAGER_PORT \
    && die "alertmanager: port $ALERTMANAGER_PORT is taken by something this script did not start: $(port_owner $ALERTMANAGER_PORT) (set STACK_ALERTMANAGER_PORT)"
  mkdir -p "$ALERTMANAGER_HOME/data"
  render_alertmanager_config
  "${ALERTMANAGER_BIN%/*}/amtool" check-config "$ALERTMANAGER_CONFIG" >>"$ALERTMANAGER_LOG" 2>&1 \
    || { tail -n 20 "$ALERTMANAGER_LOG" >&2; die "alertmanager: amtool rejects $ALERTMANAGER_CONFIG (ALERT_WEBHOOK_URL?)"; }
  say "alertmanager: starting on 127.0.0.1:$ALERTMANAGER_PORT (data $ALERTMANAGER_HOME/data)"
  launch alertmanager "$ALERTMANAGER_LOG" "$ALERTMANAGER_BIN" --config.file="$ALERTMANAGER_CONFIG" \
    --storage.path="$ALERTMANAGER_HOME/data" --web.listen-address="127.0.0.1:$ALERTMANAGER_PORT" \
    --web.external-url="http://127.0.0.1:$ALERTMANAGER_PORT" --cluster.listen-address=
  register alertmanager "$ALERTMANAGER_CONFIG"
  return 0
}

await_alertmanager() {
  wait_ready alertmanager "$ALERTMANAGER_LOG" alertmanager_alive alertmanager_ready
  say "alertmanager: up on http://127.0.0.1:$ALERTMANAGER_PORT (point Prometheus at it: monitoring/prometheus.native.yml)"
}

down_alertmanager() { stop_owned alertmanager "$ALERTMANAGER_CONFIG" ""; }
kill_alertmanager() { kill_owned alertmanager "$ALERTMANAGER_CONFIG"; }

status_alertmanager() { alertmanager_ready && echo up || echo down; }
