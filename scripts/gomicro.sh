#!/usr/bin/env bash
# Builds (cached) gomicro-peer, the go-micro v4 service that the interop tests and
# benchmarks play (interop/gomicro: go-micro.dev/v4 v4.9.0 with the go-micro kafka and
# nats broker plugins v1.2.0; see interop/gomicro/WIRE.md).
#
# Usage: scripts/gomicro.sh {build|path}
#
#   build   Build the binary unless the cached one was built from the same sources
#           (the package's *.go files, go.mod, go.sum) with the same Go toolchain.
#           Idempotent; safe to run concurrently. The last stdout line is
#           GOMICRO_PEER=<path of the binary>.
#   path    Print GOMICRO_PEER=<path> without building (exit 1 if not built or stale).
#
# Modules come from the Go module cache or the Go module proxy (GOPROXY), pinned by
# go.mod / go.sum; the build runs with GOFLAGS=-mod=readonly, so it never edits them.
#
# Environment:
#   BROKER_CACHE_DIR   cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/broker-rs);
#                      the binary is $BROKER_CACHE_DIR/bin/gomicro-peer
#   GO                 go command to use (default: go)
#
# Everything except the GOMICRO_PEER line goes to stderr.

set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC_DIR="$(cd "$SCRIPT_DIR/../interop/gomicro" && pwd)"
BROKER_CACHE_DIR="${BROKER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/broker-rs}"
BIN_DIR="$BROKER_CACHE_DIR/bin"
BIN="$BIN_DIR/gomicro-peer"
STAMP="$BIN.stamp"
GO="${GO:-go}"
# Part of the stamp: a change here rebuilds too.
BUILD_ENV=(GOWORK=off "GOFLAGS=-mod=readonly -buildvcs=false")

log() { printf 'gomicro.sh: %s\n' "$*" >&2; }
die() { printf 'gomicro.sh: error: %s\n' "$*" >&2; exit 1; }

# Hash of everything the binary is built from: the main package's Go files (not
# tests, not cmd/), go.mod, go.sum, the toolchain and the build environment.
source_hash() {
    command -v "$GO" >/dev/null 2>&1 || die "go is not installed (needed to build gomicro-peer)"
    local files f
    files=()
    for f in "$SRC_DIR"/*.go; do
        [[ "$f" == *_test.go ]] || files+=("$f")
    done
    files+=("$SRC_DIR/go.mod" "$SRC_DIR/go.sum")
    {
        "$GO" version
        "$GO" env GOOS GOARCH
        printf '%s\n' "${BUILD_ENV[@]}"
        for f in "${files[@]}"; do
            [[ -f "$f" ]] || die "missing $f"
            printf '%s\n' "${f#"$SRC_DIR"/}"
            sha256sum <"$f"
        done
    } | sha256sum | cut -d' ' -f1
}

up_to_date() {
    [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$1" ]]
}

build() {
    local hash start tmp
    hash="$(source_hash)"
    if up_to_date "$hash"; then
        log "cached $BIN is up to date"
        echo "GOMICRO_PEER=$BIN"
        return 0
    fi

    mkdir -p "$BIN_DIR"
    exec {lock_fd}>"$BROKER_CACHE_DIR/gomicro-build.lock"
    flock -w 600 "$lock_fd" || die "could not lock $BROKER_CACHE_DIR/gomicro-build.lock within 600 s"
    # Another process may have built it while we waited for the lock.
    if up_to_date "$hash"; then
        log "cached $BIN is up to date"
        echo "GOMICRO_PEER=$BIN"
        return 0
    fi

    log "building gomicro-peer from $SRC_DIR with $("$GO" version)"
    start=$SECONDS
    tmp="$(mktemp "$BIN_DIR/.gomicro-peer.XXXXXX")"
    if ! (cd "$SRC_DIR" && env "${BUILD_ENV[@]}" "$GO" build -o "$tmp" .) >&2; then
        rm -f "$tmp"
        die "go build failed"
    fi
    chmod 755 "$tmp"
    mv -f "$tmp" "$BIN"
    printf '%s\n' "$hash" >"$STAMP"
    log "built $BIN in $((SECONDS - start)) s"
    echo "GOMICRO_PEER=$BIN"
}

path() {
    up_to_date "$(source_hash)" || die "$BIN is missing or stale; run: $0 build"
    echo "GOMICRO_PEER=$BIN"
}

case "${1:-}" in
    build) build ;;
    path) path ;;
    *) echo "usage: $0 {build|path}" >&2; exit 2 ;;
esac
