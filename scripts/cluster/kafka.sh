# shellcheck shell=bash
# ================================================================== cluster profile: three Kafka brokers
# The same Maven Central jars as the default profile's broker (install_kafka, scripts/stack/kafka.sh), three JVMs in
# KRaft combined mode rendered from scripts/cluster/kafka-broker.properties. Broker n (1..3) listens on
# CLUSTER_KAFKA_PORTS[n-1] and its controller on CLUSTER_CONTROLLER_PORTS[n-1]; data in $STACK_DIR/kafka-n/data.

# Small heaps: three brokers share the machine with Postgres, Temporal and six Node processes.
CLUSTER_KAFKA_JVM=(-Xms128m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
  -XX:ActiveProcessorCount=1 -Djava.awt.headless=true)

broker_port() { echo "${CLUSTER_KAFKA_PORTS[$1 - 1]}"; }
broker_home() { echo "$STACK_DIR/kafka-$1"; }
broker_props() { echo "$STACK_DIR/kafka-$1/server.properties"; }
cluster_bootstrap() { local IFS=,; echo "${CLUSTER_KAFKA_PORTS[*]/#/127.0.0.1:}"; }

broker_voters() {
  local n voters=()
  for n in 1 2 3; do voters+=("$n@127.0.0.1:${CLUSTER_CONTROLLER_PORTS[$n - 1]}"); done
  local IFS=,
  echo "${voters[*]}"
}

broker_alive() { pid_file_pid "kafka-$1" "$(broker_props "$1")"; }
# kafka_probe (scripts/stack/kafka.sh) reads KAFKA_PORT: an ApiVersions round trip on that broker.
broker_probe() { KAFKA_PORT=$(broker_port "$1") kafka_probe 2>/dev/null; }

# All three formatted with one cluster id, kept in $STACK_DIR/kafka-cluster-id so a broker formatted later (its data
# removed) joins the same cluster.
format_brokers() {
  local n id_file="$STACK_DIR/kafka-cluster-id" id
  [[ -s $id_file ]] || kafka_tool kafka.tools.StorageTool random-uuid 2>>"$LOGS/kafka-format.log" | tail -n 1 >"$id_file"
  id=$(<"$id_file")
  for n in 1 2 3; do
    [[ -f $(broker_home "$n")/data/meta.properties ]] && continue
    say "kafka-$n: formatting KRaft storage (cluster $id)"
    kafka_tool kafka.tools.StorageTool format -t "$id" -c "$(broker_props "$n")" >>"$LOGS/kafka-format.log" 2>&1 \
      || { tail -n 20 "$LOGS/kafka-format.log" >&2; die "kafka-$n: storage format failed (see $LOGS/kafka-format.log)"; }
  done
}

render_broker() {
  local n=$1 home
  home=$(broker_home "$n")
  mkdir -p "$home/data"
  sed -e "s#@NODE_ID@#$n#" -e "s#@DATA_DIR@#$home/data#" -e "s#@KAFKA_PORT@#$(broker_port "$n")#g" \
    -e "s#@CONTROLLER_PORT@#${CLUSTER_CONTROLLER_PORTS[$n - 1]}#g" -e "s#@VOTERS@#$(broker_voters)#" \
    "$CLUSTER_CONF/kafka-broker.properties" >"$(broker_props "$n")"
}

launch_broker() {
  local n=$1
  say "kafka-$n: starting on 127.0.0.1:$(broker_port "$n") (controller :${CLUSTER_CONTROLLER_PORTS[$n - 1]})"
  launch "kafka-$n" "$LOGS/kafka-$n.out" java "${CLUSTER_KAFKA_JVM[@]}" -Dkafka.logs.file="$LOGS/kafka-$n.log" \
    -Dlog4j2.configurationFile="$CONF_DIR/kafka-log4j2.properties" -cp "$KAFKA_LIBS/*" kafka.Kafka "$(broker_props "$n")"
}
await_broker() { wait_ready "kafka-$1" "$LOGS/kafka-$1.log" "broker_alive $1" "broker_probe $1" "$LOGS/kafka-$1.out"; }

# start_brokers: launches the brokers not running; their names go to STARTED_BROKERS for await_brokers.
start_brokers() {
  local n p
  STARTED_BROKERS=()
  for n in 1 2 3; do
    broker_alive "$n" && { say "kafka-$n: already running (127.0.0.1:$(broker_port "$n"))"; STARTED_BROKERS+=("$n"); continue; }
    for p in "$(broker_port "$n")" "${CLUSTER_CONTROLLER_PORTS[$n - 1]}"; do
      port_open "$p" && die "kafka-$n: port $p is taken by something this script did not start: $(port_owner "$p")"
    done
    render_broker "$n"
  done
  format_brokers
  for n in 1 2 3; do
    broker_alive "$n" && continue
    launch_broker "$n"
    STARTED_BROKERS+=("$n")
  done
}

await_brokers() {
  local n
  for n in "${STARTED_BROKERS[@]}"; do await_broker "$n"; done
  say "kafka: 3 brokers up on $(cluster_bootstrap) (Kafka $(kafka_version), RF 3, min.insync.replicas 2)"
}

# All three at once: stopped one by one, the last two would wait for a controller quorum that is already gone.
down_brokers() {
  local n pid pids=()
  for n in 1 2 3; do
    if pid=$(owned_pid "kafka-$n" "$(broker_props "$n")"); then pids+=("$pid"); else say "kafka-$n: not running"; fi
  done
  ((${#pids[@]})) || return 0
  say "kafka: stopping brokers (pids ${pids[*]}, controlled shutdown)"
  signal_and_wait kafka TERM "${pids[@]}"
  rm -f "$RUN"/kafka-[123].pid
  say "kafka: stopped"
}
kill_broker() { kill_owned "kafka-$1" "$(broker_props "$1")"; }
# One broker, controlled shutdown (it hands its leaderships over first).
stop_broker() {
  local pid
  pid=$(owned_pid "kafka-$1" "$(broker_props "$1")") || { say "kafka-$1: not running"; return 0; }
  say "kafka-$1: stopping (pid $pid, controlled shutdown)"
  signal_and_wait "kafka-$1" TERM "$pid"
  rm -f "$RUN/kafka-$1.pid"
}
start_broker() {
  broker_alive "$1" && { say "kafka-$1: already running"; return 0; }
  render_broker "$1"
  format_brokers
  launch_broker "$1"
  await_broker "$1"
  say "kafka-$1: up"
}
