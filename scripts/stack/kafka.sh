# shellcheck shell=bash
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
kafka_tool() { java -Xmx256m -Dlog4j2.level=WARN -cp "$KAFKA_LIBS/*" "$@"; }

kafka_version() {
  local jar
  for jar in "$KAFKA_LIBS"/kafka_2.13-*.jar; do
    [[ -e $jar ]] && { jar=${jar##*/kafka_2.13-}; echo "${jar%.jar}"; return; }
  done
  echo "?"
}

install_kafka() {
  command -v java >/dev/null || { say "kafka: installing a Java runtime"; apt_install openjdk-17-jre-headless; }
  local stamp
  stamp=$(sha256sum "$CONF_DIR/kafka-pom.xml" | cut -c1-16)
  [[ -f $KAFKA_LIBS/.stamp && $(<"$KAFKA_LIBS/.stamp") == "$stamp" ]] && return 0
  if [[ $STACK_CACHE_DIR != "$STACK_DIR" && -d $KAFKA_LIBS ]]; then
    # Another instance's cache, with jars of another kafka-pom.xml: replacing them could break its running broker.
    die "kafka: the jars in $KAFKA_LIBS (STACK_CACHE_DIR) do not match kafka-pom.xml; run \`STACK_DIR=$STACK_CACHE_DIR stack.sh install\` first"
  fi
  if kafka_alive; then
    # Swapping jars under a running JVM breaks it at the next class it loads lazily: wait for its next start.
    say "kafka: kafka-pom.xml changed; the new jars are fetched at the next start (stack.sh down kafka && stack.sh up kafka)"
    return 0
  fi
  command -v mvn >/dev/null || { say "kafka: installing maven"; apt_install maven; }
  say "kafka: resolving broker jars from Maven Central ($CONF_DIR/kafka-pom.xml)"
  local repo=() tmp="$KAFKA_LIBS.tmp"
  [[ -n ${STACK_MAVEN_REPO:-} ]] && repo=(-Dmaven.repo.local="$STACK_MAVEN_REPO")
  rm -rf "$tmp" && mkdir -p "${KAFKA_LIBS%/*}"
  mvn -q -B -ntp "${repo[@]}" -f "$CONF_DIR/kafka-pom.xml" dependency:copy-dependencies -DoutputDirectory="$tmp" \
    >"$LOGS/kafka-install.log" 2>&1 || { tail -n 20 "$LOGS/kafka-install.log" >&2; die "kafka: mvn failed (see $LOGS/kafka-install.log)"; }
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die "kafka: mvn ran but no kafka_2.13 jar in $tmp"
  # Swap in whole, so an interrupted download never looks complete.
  rm -rf "$KAFKA_LIBS" && mv "$tmp" "$KAFKA_LIBS"
  echo "$stamp" >"$KAFKA_LIBS/.stamp"
  say "kafka: Kafka $(kafka_version) jars in $KAFKA_LIBS"
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
  sed -e "s#@DATA_DIR@#$KAFKA_HOME/data#" -e "s#@KAFKA_PORT@#$KAFKA_PORT#g" -e "s#@CONTROLLER_PORT@#$KAFKA_CONTROLLER_PORT#g" \
    "$CONF_DIR/kafka-server.properties" >"$KAFKA_PROPS"
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
    -Dlog4j2.configurationFile="$CONF_DIR/kafka-log4j2.properties" -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS"
  register kafka "$KAFKA_PROPS"
  return 0
}

await_kafka() {
  # A broker that dies at once (bad classpath, port race) writes only to kafka.out, hence the second log.
  wait_ready kafka "$KAFKA_LOG" kafka_alive kafka_ready "$KAFKA_OUT"
  say "kafka: up on 127.0.0.1:$KAFKA_PORT (Kafka $(kafka_version), KRaft)"
}

down_kafka() { stop_owned kafka "$KAFKA_PROPS" ", controlled shutdown"; }
kill_kafka() { kill_owned kafka "$KAFKA_PROPS"; }

status_kafka() { kafka_probe 2>/dev/null && echo up || echo down; }

