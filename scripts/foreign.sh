#!/usr/bin/env bash
# Installs (cached) the clients this project did not write that the foreign-input tests
# play: confluent-kafka from PyPI, in a virtual environment of its own.
#
# Usage: scripts/foreign.sh install
#   The last stdout line is FOREIGN_PYTHON=<the environment's python>.
#
# Environment:
#   BROKER_CACHE_DIR   cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/broker-rs)
set -euo pipefail

CONFLUENT_KAFKA_VERSION="2.12.1"
BROKER_CACHE_DIR="${BROKER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/broker-rs}"
VENV="$BROKER_CACHE_DIR/foreign-venv"
STAMP="$VENV/.installed-$CONFLUENT_KAFKA_VERSION"

log() { printf 'foreign.sh: %s\n' "$*" >&2; }

install() {
    if [[ -f "$STAMP" ]]; then
        log "confluent-kafka $CONFLUENT_KAFKA_VERSION already installed in $VENV"
    else
        log "installing confluent-kafka $CONFLUENT_KAFKA_VERSION into $VENV"
        rm -rf "$VENV"
        python3 -m venv "$VENV" >&2
        "$VENV/bin/pip" install --quiet --disable-pip-version-check \
            "confluent-kafka==$CONFLUENT_KAFKA_VERSION" >&2
        "$VENV/bin/python" -c 'import confluent_kafka' >&2
        touch "$STAMP"
    fi
    echo "FOREIGN_PYTHON=$VENV/bin/python"
}

case "${1:-}" in
    install) install ;;
    *) echo "usage: $0 install" >&2; exit 2 ;;
esac
