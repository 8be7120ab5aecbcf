#!/usr/bin/env bash
# Generate throwaway TLS material for local test servers, with openssl (no Docker).
#
# Usage: scripts/certs.sh [generate|dir|clean]
#
#   generate  (default) Make sure the files below exist and are valid for at least
#             another day; create them if not. Idempotent and safe to run from several
#             processes at once. The last stdout line is CERTS_DIR=<dir>.
#   dir       Print the directory.
#   clean     Delete the directory.
#
# Files (PEM) in the directory:
#   ca.pem, ca-key.pem            a test CA
#   server.pem, server-key.pem    server certificate for 127.0.0.1, ::1 and localhost,
#                                 signed by the CA
#   client.pem, client-key.pem    client certificate (CN=broker-test-client), signed by
#                                 the CA, for mutual TLS
#   other-ca.pem, other-ca-key.pem
#                                 an unrelated CA, to test that a wrong CA is refused
#
# Environment:
#   CERTS_DIR         where the files go (default $BROKER_CACHE_DIR/certs)
#   CERTS_DAYS        validity in days (default 30)
#   BROKER_CACHE_DIR  cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/broker-rs)
#
# The keys are for tests on 127.0.0.1 only: never use them for anything else.
# Everything except the CERTS_DIR line goes to stderr.

set -euo pipefail

BROKER_CACHE_DIR="${BROKER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/broker-rs}"
CERTS_DIR="${CERTS_DIR:-$BROKER_CACHE_DIR/certs}"
CERTS_DAYS="${CERTS_DAYS:-30}"

log() { printf 'certs.sh: %s\n' "$*" >&2; }
die() { printf 'certs.sh: error: %s\n' "$*" >&2; exit 1; }

[[ "$CERTS_DAYS" =~ ^[0-9]+$ ]] && ((CERTS_DAYS > 1)) || die "CERTS_DAYS must be a number of days (> 1)"

FILES=(ca.pem ca-key.pem server.pem server-key.pem client.pem client-key.pem other-ca.pem other-ca-key.pem)

# True when every file is there and each certificate is valid for another day.
all_valid() {
    local f
    for f in "${FILES[@]}"; do
        [[ -s "$CERTS_DIR/$f" ]] || return 1
    done
    for f in ca.pem server.pem client.pem other-ca.pem; do
        openssl x509 -in "$CERTS_DIR/$f" -noout -checkend 86400 >/dev/null 2>&1 || return 1
    done
    openssl verify -CAfile "$CERTS_DIR/ca.pem" "$CERTS_DIR/server.pem" "$CERTS_DIR/client.pem" >/dev/null 2>&1
}

# new_key FILE: an EC P-256 key in PKCS#8.
new_key() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

# new_ca NAME: NAME.pem and NAME-key.pem, a self-signed CA.
new_ca() {
    local name="$1" cn="$2"
    new_key "$WORK/$name-key.pem"
    openssl req -x509 -new -key "$WORK/$name-key.pem" -sha256 -days "$CERTS_DAYS" \
        -subj "/CN=$cn" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" \
        -out "$WORK/$name.pem" 2>/dev/null
}

# new_leaf NAME CN EXTENSIONS: NAME.pem and NAME-key.pem, signed by the test CA.
new_leaf() {
    local name="$1" cn="$2" ext="$3"
    new_key "$WORK/$name-key.pem"
    openssl req -new -key "$WORK/$name-key.pem" -subj "/CN=$cn" -out "$WORK/$name.csr" 2>/dev/null
    printf '%s\n' "$ext" >"$WORK/$name.ext"
    openssl x509 -req -in "$WORK/$name.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca-key.pem" \
        -CAcreateserial -sha256 -days "$CERTS_DAYS" -extfile "$WORK/$name.ext" \
        -out "$WORK/$name.pem" 2>/dev/null
}

cmd_generate() {
    command -v openssl >/dev/null 2>&1 \
        || die "openssl is not installed (install it, e.g. apt-get install openssl)"
    mkdir -p "$CERTS_DIR"
    if command -v flock >/dev/null 2>&1; then
        exec {lock_fd}>"$CERTS_DIR/.lock"
        flock -w 120 "$lock_fd" || die "could not lock $CERTS_DIR/.lock within 120 s"
    fi
    if all_valid; then
        log "certificates in $CERTS_DIR are valid"
        echo "CERTS_DIR=$CERTS_DIR"
        return 0
    fi
    log "generating a test CA, server and client certificates in $CERTS_DIR"
    WORK="$(mktemp -d "$CERTS_DIR/.new.XXXXXX")"
    trap 'rm -rf "$WORK"' EXIT
    (
        umask 077
        new_ca ca "broker-rs test CA"
        new_ca other-ca "broker-rs unrelated test CA"
        new_leaf server "127.0.0.1" "$(printf '%s\n' \
            "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" \
            "extendedKeyUsage=serverAuth" \
            "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost")"
        new_leaf client "broker-test-client" "$(printf '%s\n' \
            "basicConstraints=critical,CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" \
            "extendedKeyUsage=clientAuth")"
    ) || die "openssl failed to generate the certificates"
    openssl verify -CAfile "$WORK/ca.pem" "$WORK/server.pem" "$WORK/client.pem" >/dev/null \
        || die "the generated certificates do not verify"
    chmod 644 "$WORK"/*.pem
    chmod 600 "$WORK"/*-key.pem
    local f
    # Keys before certificates, so a reader never pairs a new certificate with an old key
    # (readers also take the lock through this script).
    for f in ca-key.pem ca.pem other-ca-key.pem other-ca.pem server-key.pem server.pem client-key.pem client.pem; do
        mv -f "$WORK/$f" "$CERTS_DIR/$f"
    done
    log "done: $(openssl x509 -in "$CERTS_DIR/server.pem" -noout -enddate)"
    echo "CERTS_DIR=$CERTS_DIR"
}

case "${1:-generate}" in
    generate) cmd_generate ;;
    dir) echo "$CERTS_DIR" ;;
    clean) rm -rf "$CERTS_DIR"; log "removed $CERTS_DIR" ;;
    -h | --help | help) sed -n '2,/^$/{s/^# \{0,1\}//;p}' "$0" >&2 ;;
    *) log "unknown command '$1'"; exit 2 ;;
esac
