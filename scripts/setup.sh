#!/usr/bin/env bash
# Set-up on a fresh machine (idempotent): the Python packages that prepare the demo models,
# then the demo bundle itself (models/demo/: YuNet + SFace and six test photos).
# The Rust toolchain comes with the machine; cargo fetches the crates at build time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# strace: the no-network test traces every socket call of the binary
if ! command -v strace >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq strace
fi
# libsdl2-dev: the `window` screen (feature `window`); libclang-dev: the camera's bindgen
# (feature `camera`); both for `cargo test --all-features`
if ! dpkg -s libsdl2-dev >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq libsdl2-dev
fi
if ! dpkg -s libclang-dev >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq libclang-dev
fi
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r models/requirements.txt
bash models/fetch_demo.sh
