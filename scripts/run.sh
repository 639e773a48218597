#!/usr/bin/env bash
# Sets FaceGate up (scripts/setup.sh), builds it and serves it at
# http://127.0.0.1:3000 on the embedded store. Extra arguments go to
# `facegate serve` (see `target/release/facegate serve --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo xtask site --release
cargo build --release --package server --bin facegate
exec target/release/facegate serve "$@"
