#!/usr/bin/env bash
# Install and run a local nats-server with JetStream on 127.0.0.1 (no Docker).
#
# Usage: scripts/nats.sh {install|start|stop|restart|status|url}
#
#   install   Make sure a nats-server binary is available (cached). The last stdout
#             line is NATS_SERVER_BIN=<path of the binary>.
#   start     Install if needed, then start the server in the background and
#             wait until it is ready. Idempotent. The last stdout line is
#             NATS_URL=nats://127.0.0.1:<port>.
#   stop      Stop the server started by this script (TERM, then KILL).
#   restart   stop + start; the JetStream store is kept, whatever NATS_FRESH says.
#   status    Exit 0 and print the URL if the server is running, else exit 1.
#   url       Print the client URL.
#
# Environment:
#   NATS_PORT            client port (default 4222)
#   NATS_HTTP_PORT       monitoring port (default NATS_PORT+4000, i.e. 8222;
#                        0 disables monitoring)
#   NATS_STATE_DIR       config, JetStream store, log and pid file
#                        (default $BROKER_CACHE_DIR/run/nats-$NATS_PORT)
#   NATS_SERVER_BIN      use this nats-server binary instead of installing one
#   NATS_SERVER_VERSION  version built with `go install` (default below)
#   NATS_START_TIMEOUT   seconds to wait for readiness (default 20)
#   NATS_AUTH_USER       with NATS_AUTH_PASSWORD: require this user and password
#   NATS_AUTH_PASSWORD   (for auth tests on a private port; never logged)
#   NATS_AUTH_TOKEN      require this token instead
#   NATS_TLS             off (default), on: clients must use TLS, or verify: TLS and
#                        a client certificate signed by NATS_TLS_CA
#   NATS_TLS_CERT        server certificate, PEM (default: made by scripts/certs.sh,
#   NATS_TLS_KEY         its key            for 127.0.0.1 and localhost)
#   NATS_TLS_CA          CA of client certificates, for verify (default: certs.sh's CA)
#   NATS_STOP_TIMEOUT    seconds to wait after TERM before KILL (default 10)
#   NATS_FRESH           1: a `start` that launches the server first deletes its
#                        JetStream store (streams of earlier runs); a running server
#                        is left as it is. Default 0 (store kept).
#   BROKER_CACHE_DIR     cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/broker-rs)
#
# Several instances on different ports are fully independent: each has its
# own state dir, config, store, log and pid file.
#
# Everything except the URL and binary lines goes to stderr.

set -euo pipefail

# Pinned nats-server release built with `go install` (needs Go >= 1.25).
NATS_SERVER_VERSION="${NATS_SERVER_VERSION:-v2.12.15}"
NATS_SERVER_MODULE="github.com/nats-io/nats-server/v2"

NATS_PORT="${NATS_PORT:-4222}"
BROKER_CACHE_DIR="${BROKER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/broker-rs}"
NATS_BIN_DIR="$BROKER_CACHE_DIR/bin"
NATS_CACHED_BIN="$NATS_BIN_DIR/nats-server"
NATS_STATE_DIR="${NATS_STATE_DIR:-$BROKER_CACHE_DIR/run/nats-$NATS_PORT}"
NATS_START_TIMEOUT="${NATS_START_TIMEOUT:-20}"
NATS_STOP_TIMEOUT="${NATS_STOP_TIMEOUT:-10}"

NATS_HOST="127.0.0.1"
NATS_TLS="${NATS_TLS:-off}"
case "$NATS_TLS" in
    off | on | verify) ;;
    *) printf 'nats.sh: error: NATS_TLS must be off, on or verify, got %s\n' "$NATS_TLS" >&2; exit 1 ;;
esac
NATS_URL="nats://$NATS_HOST:$NATS_PORT"
CONF_FILE="$NATS_STATE_DIR/nats-server.conf"
STORE_DIR="$NATS_STATE_DIR/store"
LOG_FILE="$NATS_STATE_DIR/nats-server.log"
PID_FILE="$NATS_STATE_DIR/nats-server.pid"

log() { printf 'nats.sh: %s\n' "$*" >&2; }
die() { printf 'nats.sh: error: %s\n' "$*" >&2; exit 1; }

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

is_uint "$NATS_PORT" && ((NATS_PORT > 0 && NATS_PORT < 65536)) \
    || die "NATS_PORT must be a TCP port number, got '$NATS_PORT'"
is_uint "$NATS_START_TIMEOUT" || die "NATS_START_TIMEOUT must be a number of seconds"
is_uint "$NATS_STOP_TIMEOUT" || die "NATS_STOP_TIMEOUT must be a number of seconds"

if [[ -n "${NATS_HTTP_PORT:-}" ]]; then
    is_uint "$NATS_HTTP_PORT" && ((NATS_HTTP_PORT < 65536)) \
        || die "NATS_HTTP_PORT must be a TCP port number (0 disables), got '$NATS_HTTP_PORT'"
elif ((NATS_PORT + 4000 < 65536)); then
    NATS_HTTP_PORT=$((NATS_PORT + 4000))
else
    NATS_HTTP_PORT=0
fi

# ---------------------------------------------------------------------------
# helpers

# True if something accepts TCP connections on 127.0.0.1:$1.
port_answers() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$NATS_HOST/$1" 2>/dev/null
}

# True if whatever listens on $1 greets like a NATS server (INFO line).
port_speaks_nats() {
    local greeting
    greeting="$(timeout 2 bash -c "exec 3<>/dev/tcp/$NATS_HOST/$1; head -c 4 <&3" 2>/dev/null || true)"
    [[ "$greeting" == "INFO" ]]
}

# Print the pid from our pid file if that process is alive and is the
# nats-server running our config file; otherwise print nothing, return 1.
our_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid cmd
    pid="$(tr -dc '0-9' <"$PID_FILE")"
    [[ -n "$pid" ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/cmdline" ]]; then
        cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline")"
    else
        cmd="$(ps -o args= -p "$pid" 2>/dev/null || true)"
    fi
    [[ "$cmd" == *"-c $CONF_FILE"* ]] || return 1
    printf '%s\n' "$pid"
}

show_log_tail() {
    if [[ -f "$LOG_FILE" ]]; then
        log "last 50 lines of $LOG_FILE:"
        tail -n 50 "$LOG_FILE" >&2 || true
    else
        log "no log file at $LOG_FILE"
    fi
}

# Run the rest of the calling function under an exclusive lock on file $1
# (if flock is available). The lock is released when the script exits.
# Locks already held are not taken twice. Their fds are closed in the server
# process (see cmd_start) so it does not keep them locked.
declare -A HELD_LOCKS=()
take_lock() {
    command -v flock >/dev/null 2>&1 || return 0
    local lock="$1" fd
    [[ -n "${HELD_LOCKS[$lock]:-}" ]] && return 0
    mkdir -p "$(dirname "$lock")"
    exec {fd}>"$lock"
    if ! flock -w 600 "$fd"; then
        die "could not lock $lock within 600 s"
    fi
    HELD_LOCKS[$lock]="$fd"
}

# ---------------------------------------------------------------------------
# install

binary_version() {
    "$1" --version 2>/dev/null | head -n 1 | grep -oE 'v?[0-9]+\.[0-9]+\.[0-9]+[^ ]*' | head -n 1 || true
}

install_with_go() {
    command -v go >/dev/null 2>&1 || { log "go is not installed"; return 1; }
    log "building nats-server $NATS_SERVER_VERSION with $(go version) (first time only, takes a few minutes)"
    mkdir -p "$NATS_BIN_DIR"
    local tmp
    tmp="$(mktemp -d)"
    # Run outside any Go module / workspace so only the pinned module is used.
    if (cd "$tmp" && GOBIN="$tmp" GO111MODULE=on GOWORK=off \
            go install "$NATS_SERVER_MODULE@$NATS_SERVER_VERSION") >&2; then
        mv -f "$tmp/nats-server" "$NATS_CACHED_BIN"
        rm -rf "$tmp"
        return 0
    fi
    rm -rf "$tmp"
    return 1
}

# Whether the nats-server binary $1 is 2.10 or newer: async-nats' JetStream API needs
# fields that older servers (Debian's 2.9 package among them) do not send.
recent_enough() {
    local v major minor
    v="$(binary_version "$1")"
    v="${v#v}"
    major="${v%%.*}"
    minor="${v#*.}"
    minor="${minor%%.*}"
    is_uint "$major" && is_uint "$minor" && ((major > 2 || (major == 2 && minor >= 10)))
}

# Sets NATS_SERVER to a usable binary, installing one if needed.
# Uses the cached binary when it is the pinned version.
use_cached() {
    [[ -x "$NATS_CACHED_BIN" ]] || return 1
    local v
    v="$(binary_version "$NATS_CACHED_BIN")"
    [[ "$v" == "$NATS_SERVER_VERSION" ]] || return 1
    NATS_SERVER="$NATS_CACHED_BIN"
    log "using cached $NATS_SERVER ($v)"
}

ensure_installed() {
    if [[ -n "${NATS_SERVER_BIN:-}" ]]; then
        [[ -x "$NATS_SERVER_BIN" ]] || die "NATS_SERVER_BIN=$NATS_SERVER_BIN is not an executable file"
        recent_enough "$NATS_SERVER_BIN" \
            || die "NATS_SERVER_BIN=$NATS_SERVER_BIN is nats-server $(binary_version "$NATS_SERVER_BIN"); 2.10 or newer is needed"
        NATS_SERVER="$NATS_SERVER_BIN"
        log "using NATS_SERVER_BIN=$NATS_SERVER ($(binary_version "$NATS_SERVER"))"
        return 0
    fi

    use_cached && return 0
    take_lock "$BROKER_CACHE_DIR/nats-install.lock"
    # Another process may have installed it while we waited for the lock.
    use_cached && return 0
    if [[ -x "$NATS_CACHED_BIN" ]]; then
        log "cached $NATS_CACHED_BIN is $(binary_version "$NATS_CACHED_BIN"), pinned version is $NATS_SERVER_VERSION; rebuilding"
    fi

    if install_with_go; then
        :
    elif [[ -x "$NATS_CACHED_BIN" ]] && recent_enough "$NATS_CACHED_BIN"; then
        log "go install failed; keeping the existing cached binary ($(binary_version "$NATS_CACHED_BIN"))"
    else
        # No fallback to a distribution package: Debian's is 2.9, which JetStream
        # clients of today cannot use.
        die "go install of $NATS_SERVER_MODULE@$NATS_SERVER_VERSION failed, and no nats-server 2.10 or newer is cached"
    fi
    NATS_SERVER="$NATS_CACHED_BIN"
    log "installed $NATS_SERVER ($(binary_version "$NATS_SERVER"))"
}

# ---------------------------------------------------------------------------
# server lifecycle

write_config() {
    mkdir -p "$NATS_STATE_DIR" "$STORE_DIR"
    local http_line="# monitoring disabled"
    if ((NATS_HTTP_PORT > 0)); then
        if port_answers "$NATS_HTTP_PORT"; then
            log "warning: monitoring port $NATS_HTTP_PORT is in use; starting without monitoring (set NATS_HTTP_PORT)"
        else
            http_line="http: $NATS_HOST:$NATS_HTTP_PORT"
        fi
    fi
    local auth_block="# no authorization"
    if [[ -n "${NATS_AUTH_TOKEN:-}" ]]; then
        auth_block="authorization { token: \"$NATS_AUTH_TOKEN\" }"
    elif [[ -n "${NATS_AUTH_USER:-}" ]]; then
        auth_block="authorization { users = [ { user: \"$NATS_AUTH_USER\", password: \"${NATS_AUTH_PASSWORD:-}\" } ] }"
    fi
    local tls_block="# no TLS"
    if [[ "$NATS_TLS" != off ]]; then
        local cert="${NATS_TLS_CERT:-}" key="${NATS_TLS_KEY:-}" ca="${NATS_TLS_CA:-}" dir
        if [[ -z "$cert" || -z "$key" || ( "$NATS_TLS" == verify && -z "$ca" ) ]]; then
            dir="$("$(dirname "${BASH_SOURCE[0]}")/certs.sh" generate | tail -n 1)" \
                || die "scripts/certs.sh could not make the TLS certificates"
            dir="${dir#CERTS_DIR=}"
            cert="${cert:-$dir/server.pem}"
            key="${key:-$dir/server-key.pem}"
            ca="${ca:-$dir/ca.pem}"
        fi
        local f
        for f in "$cert" "$key"; do
            [[ -r "$f" ]] || die "TLS file $f is not readable"
        done
        tls_block="tls {
  cert_file: \"$cert\"
  key_file: \"$key\"
  timeout: 2"
        if [[ "$NATS_TLS" == verify ]]; then
            [[ -r "$ca" ]] || die "TLS CA file $ca is not readable"
            tls_block+="
  ca_file: \"$ca\"
  verify: true"
        fi
        tls_block+="
}"
    fi
    (umask 077 && cat >"$CONF_FILE.tmp" <<EOF
# Generated by scripts/nats.sh; rewritten on every start.
server_name: "nats-$NATS_PORT"
listen: $NATS_HOST:$NATS_PORT
$http_line
# The conformance kit publishes a 1 MiB payload plus headers; the default is 1MB.
max_payload: 8MB

jetstream {
  store_dir: "$STORE_DIR"
  max_memory_store: 256MB
  max_file_store: 2GB
}

$auth_block
$tls_block
EOF
    )
    mv -f "$CONF_FILE.tmp" "$CONF_FILE"
}

validate_config() {
    if "$NATS_SERVER" --help 2>&1 | grep -qE '^[[:space:]]*-t[,[:space:]]'; then
        local out
        if ! out="$("$NATS_SERVER" -t -c "$CONF_FILE" 2>&1)"; then
            printf '%s\n' "$out" >&2
            die "config check failed for $CONF_FILE"
        fi
    fi
}

# Wait until pid $1 serves the port and the log says it is ready.
wait_ready() {
    # SECONDS is whole seconds; +1 so we wait at least the full timeout.
    local pid="$1" deadline=$((SECONDS + NATS_START_TIMEOUT + 1))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "nats-server (pid $pid) exited during startup"
            show_log_tail
            return 1
        fi
        if grep -q 'Server is ready' "$LOG_FILE" 2>/dev/null && port_answers "$NATS_PORT"; then
            return 0
        fi
        sleep 0.2
    done
    log "nats-server did not become ready within ${NATS_START_TIMEOUT}s"
    show_log_tail
    return 1
}

cmd_start() {
    take_lock "$NATS_STATE_DIR/.lock"
    local pid
    if pid="$(our_pid)"; then
        if port_answers "$NATS_PORT"; then
            log "already running (pid $pid) on $NATS_URL"
            echo "NATS_URL=$NATS_URL"
            return 0
        fi
        log "pid $pid is alive but port $NATS_PORT does not answer yet; waiting"
        wait_ready "$pid" || exit 1
        log "running (pid $pid) on $NATS_URL"
        echo "NATS_URL=$NATS_URL"
        return 0
    fi
    rm -f "$PID_FILE"

    if port_answers "$NATS_PORT"; then
        if port_speaks_nats "$NATS_PORT"; then
            log "another NATS server (not started by this script) already answers on $NATS_URL; using it"
        else
            log "another process (not NATS?) already listens on $NATS_HOST:$NATS_PORT; not starting"
        fi
        echo "NATS_URL=$NATS_URL"
        return 0
    fi

    ensure_installed
    if [[ "${NATS_FRESH:-0}" == 1 && -d "$STORE_DIR" ]]; then
        log "NATS_FRESH=1: deleting the JetStream store $STORE_DIR before the start"
        rm -rf "$STORE_DIR"
    fi
    write_config
    validate_config

    [[ -f "$LOG_FILE" ]] && mv -f "$LOG_FILE" "$LOG_FILE.prev"
    log "starting $NATS_SERVER -c $CONF_FILE (log: $LOG_FILE)"
    # New session so it survives this script and its terminal.
    (
        # Do not hand our lock fds (or any other inherited fds) to the server.
        for fd in "${HELD_LOCKS[@]}"; do exec {fd}>&-; done
        if [[ -d /proc/$BASHPID/fd ]]; then
            for fd in /proc/$BASHPID/fd/*; do
                fd="${fd##*/}"
                if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
            done
        fi
        exec setsid nohup "$NATS_SERVER" -c "$CONF_FILE" </dev/null >>"$LOG_FILE" 2>&1
    ) &
    pid=$!
    disown "$pid" 2>/dev/null || true
    echo "$pid" >"$PID_FILE"

    if ! wait_ready "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$PID_FILE"
        exit 1
    fi
    log "nats-server $(binary_version "$NATS_SERVER") running (pid $pid) on $NATS_URL (TLS $NATS_TLS), JetStream store $STORE_DIR$(
        ((NATS_HTTP_PORT > 0)) && grep -q "^http:" "$CONF_FILE" && printf ', monitoring http://%s:%s' "$NATS_HOST" "$NATS_HTTP_PORT")"
    echo "NATS_URL=$NATS_URL"
}

cmd_stop() {
    take_lock "$NATS_STATE_DIR/.lock"
    local pid
    if ! pid="$(our_pid)"; then
        rm -f "$PID_FILE"
        if port_answers "$NATS_PORT"; then
            log "not running under $NATS_STATE_DIR (something else answers on port $NATS_PORT; left alone)"
        else
            log "not running"
        fi
        return 0
    fi
    log "stopping nats-server (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + NATS_STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "still alive after ${NATS_STOP_TIMEOUT}s; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 5))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && die "pid $pid survived KILL"
    fi
    rm -f "$PID_FILE"
    log "stopped"
}

cmd_status() {
    local pid
    if pid="$(our_pid)" && port_answers "$NATS_PORT"; then
        log "running (pid $pid), state in $NATS_STATE_DIR"
        echo "$NATS_URL"
        return 0
    fi
    if port_answers "$NATS_PORT"; then
        log "a server not started by this script answers on port $NATS_PORT"
        echo "$NATS_URL"
        return 0
    fi
    log "not running"
    return 1
}

usage() {
    sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
        install)
            ensure_installed
            echo "NATS_SERVER_BIN=$NATS_SERVER"
            ;;
        start) cmd_start ;;
        stop) cmd_stop ;;
        restart)
            cmd_stop
            NATS_FRESH=0 cmd_start
            ;;
        status) cmd_status ;;
        url) echo "$NATS_URL" ;;
        -h | --help | help) usage ;;
        "") usage; exit 2 ;;
        *) log "unknown command '$cmd'"; usage; exit 2 ;;
    esac
}

main "$@"
