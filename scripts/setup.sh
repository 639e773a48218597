#!/usr/bin/env bash
# Installs what FaceGate needs to build, run and test, and nothing that is
# already there: the WASM target, wasm-bindgen-cli at the project's exact
# version, the npm packages of the browser tests (Playwright, binaryen's
# wasm-opt), and the models with the five-person photo set.
#
#   scripts/setup.sh           tools and models
#   scripts/setup.sh --system  also Debian packages for the browser tests
#                              (chromium, ffmpeg); needs root or sudo
set -euo pipefail
cd "$(dirname "$0")/.."

WASM_BINDGEN_VERSION=0.2.130
step() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

if [[ "${1:-}" == "--system" ]]; then
    missing=()
    command -v chromium >/dev/null || missing+=(chromium chromium-driver)
    command -v ffmpeg >/dev/null || missing+=(ffmpeg)
    if ((${#missing[@]})); then
        step "installing Debian packages: ${missing[*]}"
        sudo=""
        [[ $(id -u) == 0 ]] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    step "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
fi

if ! wasm-bindgen --version 2>/dev/null | grep -qx "wasm-bindgen $WASM_BINDGEN_VERSION"; then
    step "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (a few minutes, once)"
    # Not --locked: the CLI's lock file names a crate version that the registry no longer serves.
    cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

if command -v npm >/dev/null; then
    if [[ ! -f end2end/node_modules/.package-lock.json \
        || end2end/package-lock.json -nt end2end/node_modules/.package-lock.json ]]; then
        step "installing the browser tests' npm packages"
        (cd end2end && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    fi
else
    step "npm not found: the release WASM is built without wasm-opt, and browser tests cannot run"
fi

if [[ -f models/prepare.py ]]; then
    step "preparing models"
    python3 models/prepare.py --quiet
fi
