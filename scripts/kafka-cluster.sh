#!/usr/bin/env bash
# Install and run a three-node Apache Kafka 4.x cluster on 127.0.0.1 (KRaft, each node
# broker + controller, a static quorum of three): replication 3, min.insync.replicas 2.
# Each node is a scripts/kafka.sh instance of its own, so the jars, the cache and the
# readiness checks are that script's.
#
# Usage: scripts/kafka-cluster.sh <command>
#   start        install if needed, start the nodes that are not running, wait until all
#                three are ready; a start with no node running begins with empty data
#                dirs and a new cluster id unless KAFKA_FRESH=0
#   stop         stop every node
#   status       exit 0 and print the bootstrap list when all three nodes answer
#   kill N       kill -9 node N (1, 2 or 3), as a crash would; its data dir is kept
#   restart N    start node N again (after kill or stop) and wait until it is ready
#   pid N        print node N's pid (nothing when it is down)
#
# Node N serves clients on KAFKA_CLUSTER_PORT+N-1 (default 29092, 29093, 29094) and its
# controller on KAFKA_CLUSTER_PORT+100+N-1; its id is N. `start` prints
# KAFKA_CLUSTER_BROKERS=127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094 as the last line
# on stdout; all other messages go to stderr.
#
# Environment: KAFKA_CLUSTER_PORT (above), KAFKA_FRESH (above), BROKER_CACHE_DIR (as in
# scripts/kafka.sh; the state is in its run/kafka-cluster), KAFKA_HEAP_OPTS (default
# -Xms256m -Xmx384m a node).

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_SH="$SCRIPT_DIR/kafka.sh"
NODES=(1 2 3)
BASE_PORT="${KAFKA_CLUSTER_PORT:-29092}"
CACHE_ROOT="${BROKER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/broker-rs}"
STATE_DIR="$CACHE_ROOT/run/kafka-cluster"
CLUSTER_ID_FILE="$STATE_DIR/cluster.id"
HOST=127.0.0.1

log() { printf 'kafka-cluster.sh: %s\n' "$*" >&2; }
die() { printf 'kafka-cluster.sh: error: %s\n' "$*" >&2; exit 1; }

[[ "$BASE_PORT" =~ ^[0-9]+$ ]] && (( BASE_PORT > 0 && BASE_PORT + 102 < 65536 )) \
  || die "KAFKA_CLUSTER_PORT must be a port number, got '$BASE_PORT'"

client_port() { echo $((BASE_PORT + $1 - 1)); }
controller_port() { echo $((BASE_PORT + 100 + $1 - 1)); }
node_dir() { echo "$STATE_DIR/node-$1"; }

bootstrap() {
  local n list=()
  for n in "${NODES[@]}"; do list+=("$HOST:$(client_port "$n")"); done
  local IFS=,
  echo "${list[*]}"
}

voters() {
  local n list=()
  for n in "${NODES[@]}"; do list+=("$n@$HOST:$(controller_port "$n")"); done
  local IFS=,
  echo "${list[*]}"
}

check_node() {
  [[ "${1:-}" =~ ^[123]$ ]] || die "a node is 1, 2 or 3, got '${1:-}'"
}

# Runs scripts/kafka.sh COMMAND as node $1.
as_node() {
  local n="$1"
  shift
  env KAFKA_PORT="$(client_port "$n")" \
    KAFKA_CONTROLLER_PORT="$(controller_port "$n")" \
    KAFKA_NODE_ID="$n" \
    KAFKA_QUORUM_VOTERS="$(voters)" \
    KAFKA_CLUSTER_ID="$(cat "$CLUSTER_ID_FILE")" \
    KAFKA_REPLICATION=3 \
    KAFKA_MIN_ISR=2 \
    KAFKA_STATE_DIR="$(node_dir "$n")" \
    KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx384m}" \
    KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-120}" \
    KAFKA_SASL_SSL_PORT= \
    "$KAFKA_SH" "$@"
}

node_pid() {
  local pid
  pid="$(tr -dc '0-9' 2>/dev/null <"$(node_dir "$1")/kafka.pid" || true)"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
  return 0
}

any_running() {
  local n
  for n in "${NODES[@]}"; do
    [[ -z "$(node_pid "$n")" ]] || return 0
  done
  return 1
}

cmd_start() {
  "$KAFKA_SH" install
  mkdir -p "$STATE_DIR"
  if ! any_running && [[ "${KAFKA_FRESH:-1}" == 1 || ! -s "$CLUSTER_ID_FILE" ]]; then
    log "new cluster: deleting the nodes' data dirs"
    local n
    for n in "${NODES[@]}"; do rm -rf "$(node_dir "$n")/data"; done
    "$KAFKA_SH" tool kafka.tools.StorageTool random-uuid | tail -n1 | tr -d '[:space:]' \
      >"$CLUSTER_ID_FILE"
    [[ -s "$CLUSTER_ID_FILE" ]] || die "kafka.tools.StorageTool random-uuid printed nothing"
  fi
  # A node is ready only once a majority of the quorum is up: start them side by side.
  local n pids=() failed=0
  for n in "${NODES[@]}"; do
    as_node "$n" start >"$STATE_DIR/node-$n.start.out" 2>&1 &
    pids+=($!)
  done
  for n in "${NODES[@]}"; do
    if ! wait "${pids[$((n - 1))]}"; then
      log "node $n did not start:"
      tail -n 30 "$STATE_DIR/node-$n.start.out" >&2
      failed=1
    fi
  done
  (( failed == 0 )) || die "the cluster did not start (scripts/kafka-cluster.sh stop stops what did)"
  log "three nodes ready: $(bootstrap)"
  echo "KAFKA_CLUSTER_BROKERS=$(bootstrap)"
}

cmd_stop() {
  local n
  for n in "${NODES[@]}"; do
    [[ -d "$(node_dir "$n")" ]] || continue
    [[ -s "$CLUSTER_ID_FILE" ]] || echo unknown >"$CLUSTER_ID_FILE"
    as_node "$n" stop
  done
}

cmd_status() {
  local n down=0
  for n in "${NODES[@]}"; do
    if [[ -z "$(node_pid "$n")" ]]; then
      log "node $n is down"
      down=1
    fi
  done
  (( down == 0 )) || return 1
  echo "KAFKA_CLUSTER_BROKERS=$(bootstrap)"
}

cmd_kill() {
  check_node "${1:-}"
  local pid
  pid="$(node_pid "$1")"
  [[ -n "$pid" ]] || die "node $1 is not running"
  kill -KILL "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  log "killed node $1 (pid $pid)"
}

cmd_restart() {
  check_node "${1:-}"
  [[ -s "$CLUSTER_ID_FILE" ]] || die "no cluster here; run scripts/kafka-cluster.sh start"
  KAFKA_FRESH=0 as_node "$1" start >/dev/null
  log "node $1 ready again"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  kill) cmd_kill "${2:-}" ;;
  restart) cmd_restart "${2:-}" ;;
  pid) check_node "${2:-}"; node_pid "$2" ;;
  *) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
