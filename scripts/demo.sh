#!/usr/bin/env bash
# The demo, end to end: set up, build, make a gallery of four people from the demo photos,
# then rank a held-back photo of one of them against it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
cargo build --release --locked
bin="${CARGO_TARGET_DIR:-target}/release/gestalt-edge"
mkdir -p demo-out
"$bin" gallery build --bundle models/demo/bundle.toml --labels models/demo/labels.csv --out demo-out/demo.gallery
"$bin" gallery inspect demo-out/demo.gallery
"$bin" predict --bundle models/demo/bundle.toml --gallery demo-out/demo.gallery models/demo/photos/person_a_2.jpg
