#!/usr/bin/env bash
# Installs (cached) the AsyncAPI project's own document parser, @asyncapi/parser from npm,
# which scripts/asyncapi-validate.mjs runs to validate AsyncAPI documents.
#
# Usage: scripts/asyncapi.sh install
#   The last stdout line is ASYNCAPI_PARSER=<the directory the parser is installed in>.
#   Then: ASYNCAPI_PARSER=… node scripts/asyncapi-validate.mjs document.json
#
# Environment:
#   BROKER_CACHE_DIR   cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/broker-rs)
set -euo pipefail

PARSER_VERSION="3.6.6"
BROKER_CACHE_DIR="${BROKER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/broker-rs}"
DIR="$BROKER_CACHE_DIR/asyncapi-parser-$PARSER_VERSION"
STAMP="$DIR/.installed"

log() { printf 'asyncapi.sh: %s\n' "$*" >&2; }

install() {
    if [[ -f "$STAMP" ]]; then
        log "@asyncapi/parser $PARSER_VERSION already installed in $DIR"
    else
        if ! command -v npm >/dev/null; then
            log "npm is needed (with node 18 or later) to install @asyncapi/parser"
            exit 1
        fi
        log "installing @asyncapi/parser $PARSER_VERSION into $DIR"
        rm -rf "$DIR"
        mkdir -p "$DIR"
        echo '{"name":"broker-rs-asyncapi","private":true}' >"$DIR/package.json"
        npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error \
            "@asyncapi/parser@$PARSER_VERSION" >&2
        touch "$STAMP"
    fi
    echo "ASYNCAPI_PARSER=$DIR"
}

case "${1:-}" in
    install) install ;;
    *) echo "usage: $0 install" >&2; exit 2 ;;
esac
