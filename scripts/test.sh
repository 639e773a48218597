#!/usr/bin/env bash
# Runs every check FaceGate has: formatting, clippy for the server and the
# WASM builds, unit and integration tests on real models and photos, and the
# browser tests in Debian's Chromium. Exits non-zero on the first failure.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

scripts/setup.sh --system

step "rustfmt"
cargo fmt --all --check

step "clippy (server, ssr)"
cargo clippy --release --package app --package server --package xtask --features app/ssr \
    --all-targets -- -D warnings
step "clippy (browser, hydrate: every page, then the check-in page's own bundle)"
cargo clippy --release --package app --package frontend --features app/hydrate \
    --target wasm32-unknown-unknown -- -D warnings
cargo clippy --release --package app --package frontend --no-default-features \
    --features app/hydrate --target wasm32-unknown-unknown -- -D warnings

step "building the site and the server"
cargo xtask site --release
cargo build --release --package server --bin facegate

step "unit and integration tests"
cargo test --release --package app --package server --features app/ssr

step "browser tests"
(cd end2end && npx playwright test)
