#!/usr/bin/env bash
# Install and run a single-node Apache Kafka 4.x broker (KRaft, combined
# broker + controller) on 127.0.0.1, without Docker.
#
# The broker's jars come from Maven Central through Maven (scripts/kafka/pom.xml)
# and are cached outside the repository; the broker runs as a plain java process.
#
# Usage: scripts/kafka.sh <command>
#   install            fetch the jars into the cache (no-op when already complete)
#   start              install if needed, start the broker, wait until it is ready
#   stop               stop the broker (TERM, then KILL after KAFKA_STOP_TIMEOUT s)
#   restart            stop, then start; the data dir (and so every message) is kept,
#                      whatever KAFKA_FRESH says
#   status             exit 0 and print the bootstrap address if running, else exit 1
#   logs               print the path of the broker's log file
#   tool CLASS [ARGS]  run a Kafka tool class from the same jars, e.g.
#                      tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
#
# Environment:
#   KAFKA_PORT             client (PLAINTEXT) port                  default 9092
#   KAFKA_CONTROLLER_PORT  KRaft controller port                    default KAFKA_PORT+1
#                          (KAFKA_PORT+2 when KAFKA_PORT+1 is KAFKA_SASL_SSL_PORT)
#   BROKER_CACHE_DIR       cache root        default ${XDG_CACHE_HOME:-$HOME/.cache}/broker-rs
#   KAFKA_STATE_DIR        data, logs, pid file, server.properties  default $BROKER_CACHE_DIR/run/kafka-$KAFKA_PORT
#   KAFKA_HEAP_OPTS        JVM heap options                         default -Xms512m -Xmx512m
#   KAFKA_START_TIMEOUT    seconds to wait for readiness            default 90
#   KAFKA_STOP_TIMEOUT     seconds to wait after TERM               default 30
#   JAVA_HOME              used to find java when set
#   KAFKA_NODE_ID          the node's id                             default 1
#   KAFKA_QUORUM_VOTERS    a static controller quorum, id@host:port,...; unset: this node
#                          alone (scripts/kafka-cluster.sh sets it for its three nodes)
#   KAFKA_CLUSTER_ID       the cluster id a new data dir is formatted with; required with
#                          KAFKA_QUORUM_VOTERS (every node the same), random otherwise
#   KAFKA_REPLICATION      replication of the internal topics and of auto-created ones
#                                                                   default 1
#   KAFKA_MIN_ISR          min.insync.replicas                      default 1
#   KAFKA_FRESH            1: a `start` that launches the broker first deletes its data
#                          dir (topics, offsets), so a test run does not pay for the
#                          partitions of earlier runs at startup. A running broker is
#                          left as it is. Default 0 (data kept).
#
# Each port gets its own state dir by default, so independent instances can
# run side by side (e.g. KAFKA_PORT=19092 scripts/kafka.sh start).
# A state dir is formatted for the controller port it was first started
# with; use a fresh KAFKA_STATE_DIR when changing KAFKA_CONTROLLER_PORT.
#
# Opt-in SASL_SSL listener (for security tests), beside the PLAINTEXT one:
#   KAFKA_SASL_SSL_PORT    port of a SASL_SSL listener; unset: none (the default)
#   KAFKA_SASL_USER        its user                                 required with the port
#   KAFKA_SASL_PASSWORD    its password (letters, digits, _.@%+:!#*-) required with the port
#   KAFKA_SASL_MECHANISM   SCRAM-SHA-256 or SCRAM-SHA-512           default SCRAM-SHA-256
#   KAFKA_TLS_DIR          holds server.pem and server-key.pem      default: scripts/certs.sh's
# The server certificate (scripts/certs.sh: 127.0.0.1 and localhost) is given to
# Kafka inline as a PEM key store; clients trust that directory's ca.pem. The
# SCRAM user is added when the data dir is formatted (StorageTool --add-scram),
# or, for a data dir formatted before or with other credentials, through the
# PLAINTEXT listener once the broker is up (ConfigCommand). With the port set,
# `start` refuses a running broker of this state dir that lacks the listener
# (stop it first). Example:
#   KAFKA_PORT=19192 KAFKA_SASL_SSL_PORT=19193 KAFKA_SASL_USER=alice \
#     KAFKA_SASL_PASSWORD=... scripts/kafka.sh start
#
# `start` prints KAFKA_BROKERS=127.0.0.1:<port> as the last line on stdout (in
# SASL_SSL mode preceded by KAFKA_SASL_SSL_BROKERS=127.0.0.1:<port>); all other
# messages go to stderr.

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SUPPORT_DIR="$SCRIPT_DIR/kafka"
POM="$SUPPORT_DIR/pom.xml"
BROKER_LOG4J="$SUPPORT_DIR/log4j2-broker.xml"
TOOLS_LOG4J="$SUPPORT_DIR/log4j2-tools.xml"

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { printf 'kafka.sh: error: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
}

# ---------------------------------------------------------------- settings

[[ -f "$POM" ]] || die "missing $POM"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\([^<]*\)</kafka.version>.*:\1:p;T;q' "$POM")"
[[ -n "$KAFKA_VERSION" ]] || die "cannot read <kafka.version> from $POM"

KAFKA_PORT="${KAFKA_PORT:-9092}"
[[ "$KAFKA_PORT" =~ ^[0-9]+$ ]] && (( KAFKA_PORT > 0 && KAFKA_PORT < 65536 )) \
  || die "KAFKA_PORT must be a port number, got '$KAFKA_PORT'"
KAFKA_SASL_SSL_PORT="${KAFKA_SASL_SSL_PORT:-}"
if [[ -n "$KAFKA_SASL_SSL_PORT" ]]; then
  [[ "$KAFKA_SASL_SSL_PORT" =~ ^[0-9]+$ ]] && (( KAFKA_SASL_SSL_PORT > 0 && KAFKA_SASL_SSL_PORT < 65536 )) \
    || die "KAFKA_SASL_SSL_PORT must be a port number, got '$KAFKA_SASL_SSL_PORT'"
  (( KAFKA_SASL_SSL_PORT != KAFKA_PORT )) || die "KAFKA_SASL_SSL_PORT must differ from KAFKA_PORT"
fi
if [[ -z "${KAFKA_CONTROLLER_PORT:-}" ]]; then
  KAFKA_CONTROLLER_PORT=$((KAFKA_PORT + 1))
  [[ "$KAFKA_CONTROLLER_PORT" == "$KAFKA_SASL_SSL_PORT" ]] && KAFKA_CONTROLLER_PORT=$((KAFKA_PORT + 2))
fi
[[ "$KAFKA_CONTROLLER_PORT" =~ ^[0-9]+$ ]] && (( KAFKA_CONTROLLER_PORT > 0 && KAFKA_CONTROLLER_PORT < 65536 )) \
  || die "KAFKA_CONTROLLER_PORT must be a port number, got '$KAFKA_CONTROLLER_PORT'"
(( KAFKA_CONTROLLER_PORT != KAFKA_PORT )) || die "KAFKA_CONTROLLER_PORT must differ from KAFKA_PORT"
[[ "$KAFKA_CONTROLLER_PORT" != "$KAFKA_SASL_SSL_PORT" ]] \
  || die "KAFKA_CONTROLLER_PORT must differ from KAFKA_SASL_SSL_PORT"
NODE_ID="${KAFKA_NODE_ID:-1}"
QUORUM_VOTERS="${KAFKA_QUORUM_VOTERS:-}"
REPLICATION="${KAFKA_REPLICATION:-1}"
MIN_ISR="${KAFKA_MIN_ISR:-1}"
for setting in NODE_ID REPLICATION MIN_ISR; do
  [[ "${!setting}" =~ ^[1-9][0-9]*$ ]] || die "KAFKA_$setting must be a whole number from 1, got '${!setting}'"
done
[[ -z "$QUORUM_VOTERS" || -n "${KAFKA_CLUSTER_ID:-}" ]] \
  || die "KAFKA_QUORUM_VOTERS needs KAFKA_CLUSTER_ID (the same on every node)"
SASL_USER="${KAFKA_SASL_USER:-}"
SASL_PASSWORD="${KAFKA_SASL_PASSWORD:-}"
SASL_MECHANISM="${KAFKA_SASL_MECHANISM:-SCRAM-SHA-256}"
if [[ -n "$KAFKA_SASL_SSL_PORT" ]]; then
  [[ "$SASL_USER" =~ ^[A-Za-z0-9_.-]+$ ]] \
    || die "KAFKA_SASL_SSL_PORT needs KAFKA_SASL_USER (letters, digits, '_', '.', '-')"
  [[ "$SASL_PASSWORD" =~ ^[A-Za-z0-9_.@%+:!#*-]+$ ]] \
    || die "KAFKA_SASL_SSL_PORT needs KAFKA_SASL_PASSWORD (letters, digits and _.@%+:!#*-)"
  case "$SASL_MECHANISM" in
    SCRAM-SHA-256|SCRAM-SHA-512) ;;
    *) die "KAFKA_SASL_MECHANISM must be SCRAM-SHA-256 or SCRAM-SHA-512, got '$SASL_MECHANISM'" ;;
  esac
fi

CACHE_ROOT="${BROKER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/broker-rs}"
VERSION_DIR="$CACHE_ROOT/kafka-$KAFKA_VERSION"
LIB_DIR="$VERSION_DIR/lib"
LIB_MARKER="$VERSION_DIR/lib.complete"

STATE_DIR="${KAFKA_STATE_DIR:-$CACHE_ROOT/run/kafka-$KAFKA_PORT}"
DATA_DIR="$STATE_DIR/data"
LOGS_DIR="$STATE_DIR/logs"
LOG_FILE="$LOGS_DIR/server.log"
OUT_FILE="$LOGS_DIR/kafka.out"
PID_FILE="$STATE_DIR/kafka.pid"
STARTED_FILE="$STATE_DIR/kafka.started"   # "<pid> <log offset at launch>"
READY_FILE="$STATE_DIR/kafka.ready"       # "<pid>" once that process was seen ready
PROPS_FILE="$STATE_DIR/server.properties"
SCRAM_FILE="$DATA_DIR/broker-rs.scram"         # hash of the SCRAM user the data dir holds

HOST=127.0.0.1
BOOTSTRAP="$HOST:$KAFKA_PORT"
SASL_BOOTSTRAP="${KAFKA_SASL_SSL_PORT:+$HOST:$KAFKA_SASL_SSL_PORT}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
read -r -a HEAP_OPTS <<<"${KAFKA_HEAP_OPTS:--Xms512m -Xmx512m}"

# ---------------------------------------------------------------- helpers

JAVA=""
find_java() {
  [[ -n "$JAVA" ]] && return 0
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    JAVA="$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    JAVA="$(command -v java)"
  else
    die "java not found: install a JDK 17+ (e.g. apt-get install openjdk-17-jdk-headless) or set JAVA_HOME"
  fi
  local line major minor
  line="$("$JAVA" -version 2>&1)" || die "cannot run $JAVA -version"
  line="${line%%$'\n'*}"
  major="$(sed -n 's/.*version "\([0-9]*\)\.\{0,1\}\([0-9]*\).*/\1 \2/p' <<<"$line")"
  read -r major minor <<<"$major"
  [[ "${major:-}" == 1 ]] && major="${minor:-0}"
  [[ "${major:-}" =~ ^[0-9]+$ ]] || die "cannot parse java version from: $line"
  (( major >= 17 )) || die "java $major found at $JAVA, but Kafka $KAFKA_VERSION needs a JDK 17+"
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() {
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

# Describe who listens on 127.0.0.1:$1 (best effort, for messages only).
port_owner() {
  ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p;T;q' || true
}

# True when pid $1 is a live kafka.Kafka process using this state dir.
is_our_broker() {
  local pid="$1" cmd
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmd" == *kafka.Kafka* && "$cmd" == *"$PROPS_FILE"* ]]
}

# Print the pid of this instance's broker, or nothing. Uses the pid file, and
# falls back to looking for a kafka.Kafka process started with this state
# dir's server.properties (in case the pid file was lost).
broker_pid() {
  local pid
  if [[ -f "$PID_FILE" ]]; then
    pid="$(tr -dc '0-9' <"$PID_FILE")"
    if is_our_broker "$pid"; then echo "$pid"; return 0; fi
  fi
  local f
  for f in $(grep -lsF -- "$PROPS_FILE" /proc/[0-9]*/cmdline 2>/dev/null || true); do
    pid="${f#/proc/}"
    pid="${pid%/cmdline}"
    if is_our_broker "$pid"; then echo "$pid"; return 0; fi
  done
  return 0
}

print_log_tail() {
  local n="${1:-50}"
  if [[ -s "$LOG_FILE" ]]; then
    log "last $n lines of $LOG_FILE:"
    tail -n "$n" "$LOG_FILE" >&2
  else
    log "no log at $LOG_FILE"
  fi
  if [[ -s "$OUT_FILE" ]]; then
    log "last $n lines of $OUT_FILE (JVM stdout/stderr):"
    tail -n "$n" "$OUT_FILE" >&2
  fi
}

# Run a Kafka tool class from the cached jars, logging at WARN to stderr.
run_tool() {
  find_java
  "$JAVA" -Xmx256m -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$TOOLS_LOG4J" \
    -cp "$LIB_DIR/*" "$@"
}

# ---------------------------------------------------------------- install

lib_complete() {
  [[ -f "$LIB_MARKER" && -f "$LIB_DIR/kafka_2.13-$KAFKA_VERSION.jar" ]] || return 1
  [[ "$(head -n1 "$LIB_MARKER")" == "$(sha256sum "$POM" | cut -d' ' -f1)" ]]
}

cmd_install() {
  if lib_complete; then
    log "Kafka $KAFKA_VERSION jars already in $LIB_DIR"
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found: install Maven 3.6+ (e.g. apt-get install maven)"
  find_java
  mkdir -p "$VERSION_DIR"

  # Serialize concurrent installs (e.g. two instances started at once).
  exec 9>"$VERSION_DIR/.install.lock"
  flock 9
  if lib_complete; then
    exec 9>&-
    log "Kafka $KAFKA_VERSION jars already in $LIB_DIR"
    return 0
  fi

  log "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIB_DIR"
  local tmp="$VERSION_DIR/lib.partial" mvn_log="$VERSION_DIR/mvn.log"
  rm -rf "$tmp"
  rm -f "$LIB_MARKER"
  if ! mvn -B -q -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$tmp" >"$mvn_log" 2>&1; then
    tail -n 40 "$mvn_log" >&2
    exec 9>&-
    die "mvn failed: could not fetch Kafka $KAFKA_VERSION jars (full output in $mvn_log)"
  fi
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] \
    || { exec 9>&-; die "mvn succeeded but $tmp/kafka_2.13-$KAFKA_VERSION.jar is missing"; }
  rm -rf "$LIB_DIR"
  mv "$tmp" "$LIB_DIR"
  # The marker is written only after a complete copy; it records the POM's
  # hash so that editing the POM triggers a fresh copy.
  { sha256sum "$POM" | cut -d' ' -f1; ls "$LIB_DIR" | wc -l; } >"$LIB_MARKER"
  exec 9>&-
  log "installed $(ls "$LIB_DIR" | wc -l) jars into $LIB_DIR"
}

# ---------------------------------------------------------------- start

# Serialize start/stop/restart on one state dir (fd 8; fd 9 is the install
# lock). Neither descriptor is passed on to the broker process.
lock_state() {
  mkdir -p "$STATE_DIR"
  exec 8>"$STATE_DIR/.lock"
  flock -w "$((START_TIMEOUT + STOP_TIMEOUT + 60))" 8 \
    || die "timed out waiting for another kafka.sh using $STATE_DIR"
}

# The directory holding server.pem and server-key.pem (SASL_SSL mode).
tls_dir() {
  if [[ -n "${KAFKA_TLS_DIR:-}" ]]; then
    echo "$KAFKA_TLS_DIR"
    return 0
  fi
  local out
  out="$("$SCRIPT_DIR/certs.sh" generate)" || die "scripts/certs.sh failed (is openssl installed?)"
  out="$(sed -n 's/^CERTS_DIR=//p' <<<"$out" | tail -n1)"
  [[ -n "$out" ]] || die "scripts/certs.sh printed no CERTS_DIR"
  echo "$out"
}

# A PEM file as one Java properties value (newlines escaped).
pem_value() {
  [[ -s "$1" ]] || die "missing or empty $1"
  awk 'NF { printf "%s\\n", $0 }' "$1"
}

# The SASL_SSL listener's lines of server.properties.
sasl_properties() {
  local dir mech_lower chain key
  dir="$(tls_dir)"
  chain="$(pem_value "$dir/server.pem")"
  key="$(pem_value "$dir/server-key.pem")"
  mech_lower="$(tr 'A-Z' 'a-z' <<<"$SASL_MECHANISM")"
  cat <<EOF
sasl.enabled.mechanisms=$SASL_MECHANISM
listener.name.sasl_ssl.sasl.enabled.mechanisms=$SASL_MECHANISM
listener.name.sasl_ssl.$mech_lower.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.certificate.chain=$chain
listener.name.sasl_ssl.ssl.keystore.key=$key
listener.name.sasl_ssl.ssl.client.auth=none
EOF
}

write_properties() {
  mkdir -p "$DATA_DIR" "$LOGS_DIR"
  local listeners="PLAINTEXT://$HOST:$KAFKA_PORT" protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  local extra=""
  if [[ -n "$KAFKA_SASL_SSL_PORT" ]]; then
    listeners="$listeners,SASL_SSL://$HOST:$KAFKA_SASL_SSL_PORT"
    protocols="$protocols,SASL_SSL:SASL_SSL"
    extra="$(sasl_properties)"
  fi
  local quorum="controller.quorum.bootstrap.servers=$HOST:$KAFKA_CONTROLLER_PORT"
  [[ -z "$QUORUM_VOTERS" ]] || quorum="controller.quorum.voters=$QUORUM_VOTERS"
  # The file may hold the test server's private key.
  ( umask 077; : >"$PROPS_FILE" )
  cat >"$PROPS_FILE" <<EOF
# Generated by scripts/kafka.sh; rewritten on every start.
process.roles=broker,controller
node.id=$NODE_ID
$quorum
listeners=$listeners,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=$listeners,CONTROLLER://$HOST:$KAFKA_CONTROLLER_PORT
listener.security.protocol.map=$protocols
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$DATA_DIR
num.partitions=1
auto.create.topics.enable=true
default.replication.factor=$REPLICATION
min.insync.replicas=$MIN_ISR
offsets.topic.replication.factor=$REPLICATION
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=$REPLICATION
transaction.state.log.min.isr=$MIN_ISR
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=$REPLICATION
share.coordinator.state.topic.min.isr=$MIN_ISR
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
# Messages up to 8 MiB (the conformance kit publishes 1 MiB payloads; the
# default limit is about 1 MiB including the record overhead).
message.max.bytes=8388608
replica.fetch.max.bytes=8388608
# A single-node test broker: groups form at once, and clients may use short
# session timeouts so that a departed member is noticed quickly.
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
group.consumer.min.session.timeout.ms=1000
group.consumer.min.heartbeat.interval.ms=500
group.consumer.heartbeat.interval.ms=1000
group.share.min.session.timeout.ms=1000
group.share.min.heartbeat.interval.ms=500
EOF
  [[ -z "$extra" ]] || printf '%s\n' "$extra" >>"$PROPS_FILE"
}

# What identifies the SCRAM user a data dir holds (no secret in clear).
scram_id() {
  printf '%s\n%s\n%s\n' "$SASL_MECHANISM" "$SASL_USER" "$SASL_PASSWORD" | sha256sum | cut -d' ' -f1
}

# After start in SASL_SSL mode: add or update the SCRAM user through the PLAINTEXT
# listener when the data dir was formatted without it (or with other credentials).
ensure_scram_user() {
  [[ -n "$KAFKA_SASL_SSL_PORT" ]] || return 0
  local id
  id="$(scram_id)"
  [[ "$(cat "$SCRAM_FILE" 2>/dev/null)" == "$id" ]] && return 0
  log "setting the $SASL_MECHANISM credentials of user $SASL_USER"
  run_tool kafka.admin.ConfigCommand --bootstrap-server "$BOOTSTRAP" --alter \
    --entity-type users --entity-name "$SASL_USER" \
    --add-config "$SASL_MECHANISM=[iterations=4096,password=$SASL_PASSWORD]" >/dev/null \
    || die "could not set the SCRAM credentials of $SASL_USER"
  echo "$id" >"$SCRAM_FILE"
}

format_storage() {
  if [[ -f "$DATA_DIR/meta.properties" ]]; then
    return 0
  fi
  local cluster_id="${KAFKA_CLUSTER_ID:-}"
  if [[ -z "$cluster_id" ]]; then
    cluster_id="$(run_tool kafka.tools.StorageTool random-uuid | tail -n1 | tr -d '[:space:]')" \
      || die "kafka.tools.StorageTool random-uuid failed"
    [[ -n "$cluster_id" ]] || die "kafka.tools.StorageTool random-uuid printed nothing"
  fi
  # A static quorum (KAFKA_QUORUM_VOTERS) is formatted as it is; a node alone is its
  # own controller quorum.
  local quorum=(--standalone)
  [[ -z "$QUORUM_VOTERS" ]] || quorum=()
  log "formatting $DATA_DIR (cluster id $cluster_id)"
  local scram=()
  if [[ -n "$KAFKA_SASL_SSL_PORT" ]]; then
    scram=(--add-scram "$SASL_MECHANISM=[name=$SASL_USER,password=$SASL_PASSWORD]")
  fi
  run_tool kafka.tools.StorageTool format "${quorum[@]}" -t "$cluster_id" -c "$PROPS_FILE" \
    "${scram[@]}" >&2 \
    || die "kafka.tools.StorageTool format failed for $DATA_DIR"
  [[ -z "$KAFKA_SASL_SSL_PORT" ]] || scram_id >"$SCRAM_FILE"
}

# Wait until the broker with pid $1 is ready: the log shows "Kafka Server
# started" after byte offset $2 and the client port answers.
wait_ready() {
  local pid="$1" offset="$2" deadline=$((SECONDS + START_TIMEOUT)) size
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE" "$STARTED_FILE" "$READY_FILE"
      print_log_tail 50
      die "Kafka exited during startup (pid $pid)"
    fi
    if [[ -f "$LOG_FILE" ]]; then
      size="$(stat -c %s "$LOG_FILE")"
      # The log rolled over (or was truncated) since the start: search it all.
      (( size >= offset )) || offset=0
      # Process substitution, not a pipe: with pipefail, grep -q exiting early
      # would make the pipeline fail through tail's SIGPIPE.
      if grep -q 'Kafka Server started' < <(tail -c +"$((offset + 1))" "$LOG_FILE") \
         && port_open "$KAFKA_PORT" \
         && { [[ -z "$KAFKA_SASL_SSL_PORT" ]] || port_open "$KAFKA_SASL_SSL_PORT"; }; then
        echo "$pid" >"$READY_FILE"
        return 0
      fi
    fi
    if (( SECONDS >= deadline )); then
      print_log_tail 50
      die "Kafka not ready after ${START_TIMEOUT}s (pid $pid is still running; 'scripts/kafka.sh stop' stops it)"
    fi
    sleep 0.5
  done
}

# The stdout lines of a successful start.
print_addresses() {
  [[ -z "$SASL_BOOTSTRAP" ]] || echo "KAFKA_SASL_SSL_BROKERS=$SASL_BOOTSTRAP"
  echo "KAFKA_BROKERS=$BOOTSTRAP"
}

cmd_start() {
  local pid
  pid="$(broker_pid)"
  if [[ -n "$pid" ]]; then
    echo "$pid" >"$PID_FILE"
    if [[ -n "$KAFKA_SASL_SSL_PORT" ]] \
       && ! grep -qF "SASL_SSL://$HOST:$KAFKA_SASL_SSL_PORT," "$PROPS_FILE" 2>/dev/null; then
      die "the broker of $STATE_DIR (pid $pid) runs without a SASL_SSL listener on $KAFKA_SASL_SSL_PORT; stop it first"
    fi
    if [[ "$(cat "$READY_FILE" 2>/dev/null)" == "$pid" ]] && port_open "$KAFKA_PORT"; then
      log "already running (pid $pid) on $BOOTSTRAP"
    else
      # Started by another invocation that has not seen it ready (yet).
      local spid="" soffset=0
      [[ -f "$STARTED_FILE" ]] && read -r spid soffset <"$STARTED_FILE" || true
      [[ "$spid" == "$pid" && "$soffset" =~ ^[0-9]+$ ]] || soffset=0
      log "broker process $pid exists but is not known to be ready; waiting"
      wait_ready "$pid" "$soffset"
      log "already running (pid $pid) on $BOOTSTRAP"
    fi
    ensure_scram_user
    print_addresses
    return 0
  fi
  rm -f "$PID_FILE" "$STARTED_FILE" "$READY_FILE"

  if port_open "$KAFKA_PORT"; then
    local owner
    owner="$(port_owner "$KAFKA_PORT")"
    log "port $KAFKA_PORT is already served by another process${owner:+ ($owner)}, not started by this script with state dir $STATE_DIR"
    [[ -z "$KAFKA_SASL_SSL_PORT" ]] \
      || die "cannot add a SASL_SSL listener to a broker this script did not start; use other ports"
    log "it accepts TCP connections; assuming it is a Kafka broker and using it"
    echo "KAFKA_BROKERS=$BOOTSTRAP"
    return 0
  fi
  if [[ -n "$KAFKA_SASL_SSL_PORT" ]] && port_open "$KAFKA_SASL_SSL_PORT"; then
    local owner
    owner="$(port_owner "$KAFKA_SASL_SSL_PORT")"
    die "SASL_SSL port $KAFKA_SASL_SSL_PORT is in use${owner:+ by $owner}; set KAFKA_SASL_SSL_PORT to a free port"
  fi
  if port_open "$KAFKA_CONTROLLER_PORT"; then
    local owner
    owner="$(port_owner "$KAFKA_CONTROLLER_PORT")"
    die "controller port $KAFKA_CONTROLLER_PORT is in use${owner:+ by $owner}; set KAFKA_CONTROLLER_PORT to a free port"
  fi

  cmd_install
  find_java
  write_properties
  if [[ "${KAFKA_FRESH:-0}" == 1 && -d "$DATA_DIR" ]]; then
    log "KAFKA_FRESH=1: deleting $DATA_DIR before the start"
    rm -rf "$DATA_DIR"
  fi
  format_storage

  local offset=0
  [[ -f "$LOG_FILE" ]] && offset="$(stat -c %s "$LOG_FILE")"

  log "starting Kafka $KAFKA_VERSION on $BOOTSTRAP${SASL_BOOTSTRAP:+ and SASL_SSL $SASL_BOOTSTRAP} (controller $HOST:$KAFKA_CONTROLLER_PORT, state $STATE_DIR)"
  local t0=$SECONDS
  {
    printf '\n=== %s starting kafka.Kafka %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$PROPS_FILE"
  } >>"$OUT_FILE"
  # setsid + nohup: the broker is detached from this script's process group
  # and terminal, so it keeps running after this script exits. The inner shell
  # writes its own pid before exec'ing java, so the pid file holds the java
  # process itself.
  nohup setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
    "$JAVA" "${HEAP_OPTS[@]}" \
    -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dkafka.logs.dir="$LOGS_DIR" \
    -Dlog4j2.configurationFile="$BROKER_LOG4J" \
    -cp "$LIB_DIR/*" kafka.Kafka "$PROPS_FILE" \
    >>"$OUT_FILE" 2>&1 </dev/null 8>&- 9>&- &
  local launcher=$!

  # Wait for the pid file written by the launcher.
  local i
  for i in $(seq 1 50); do
    [[ -s "$PID_FILE" ]] && break
    kill -0 "$launcher" 2>/dev/null || break
    sleep 0.1
  done
  pid="$(tr -dc '0-9' <"$PID_FILE" 2>/dev/null || true)"
  [[ -n "$pid" ]] || { print_log_tail 50; die "failed to launch java (see $OUT_FILE)"; }
  echo "$pid $offset" >"$STARTED_FILE"

  wait_ready "$pid" "$offset"
  log "Kafka $KAFKA_VERSION ready on $BOOTSTRAP${SASL_BOOTSTRAP:+ and SASL_SSL $SASL_BOOTSTRAP} (pid $pid) after $((SECONDS - t0))s; log: $LOG_FILE"
  ensure_scram_user
  print_addresses
}

# ---------------------------------------------------------------- stop

cmd_stop() {
  local pid
  pid="$(broker_pid)"
  if [[ -z "$pid" ]]; then
    rm -f "$PID_FILE" "$STARTED_FILE" "$READY_FILE"
    log "not running (state dir $STATE_DIR)"
    return 0
  fi
  log "stopping Kafka (pid $pid) on $BOOTSTRAP"
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + STOP_TIMEOUT))
  while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS >= deadline )); then
      log "still running after ${STOP_TIMEOUT}s; sending KILL"
      kill -KILL "$pid" 2>/dev/null || true
      local j
      for j in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      break
    fi
    sleep 0.2
  done
  kill -0 "$pid" 2>/dev/null && die "could not stop pid $pid"
  rm -f "$PID_FILE" "$STARTED_FILE" "$READY_FILE"
  log "stopped"
}

# ---------------------------------------------------------------- status/logs

cmd_status() {
  local pid
  pid="$(broker_pid)"
  if [[ -n "$pid" ]] && port_open "$KAFKA_PORT"; then
    log "running (pid $pid), state dir $STATE_DIR"
    echo "KAFKA_BROKERS=$BOOTSTRAP"
    return 0
  fi
  if [[ -n "$pid" ]]; then
    log "process $pid is up but $BOOTSTRAP does not answer (starting or hung)"
    return 1
  fi
  if port_open "$KAFKA_PORT"; then
    local owner
    owner="$(port_owner "$KAFKA_PORT")"
    log "port $KAFKA_PORT is served by a process not started with state dir $STATE_DIR${owner:+ ($owner)}"
    echo "KAFKA_BROKERS=$BOOTSTRAP"
    return 0
  fi
  log "not running on $BOOTSTRAP"
  return 1
}

cmd_logs() {
  echo "$LOG_FILE"
}

cmd_tool() {
  (( $# >= 1 )) || die "usage: scripts/kafka.sh tool CLASS [ARGS...]"
  lib_complete || cmd_install
  run_tool "$@"
}

# ---------------------------------------------------------------- main

main() {
  local cmd="${1:-}"
  (( $# )) && shift
  case "$cmd" in
    install) cmd_install ;;
    start) lock_state; cmd_start ;;
    stop) lock_state; cmd_stop ;;
    restart) lock_state; cmd_stop; KAFKA_FRESH=0 cmd_start ;;
    status) cmd_status ;;
    logs) cmd_logs ;;
    tool) cmd_tool "$@" ;;
    -h|--help|help) usage ;;
    "") usage; exit 2 ;;
    *) usage; die "unknown command '$cmd'" ;;
  esac
}

main "$@"
