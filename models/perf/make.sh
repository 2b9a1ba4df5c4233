#!/usr/bin/env bash
# Makes the perf bundles: architecture-exact graphs with seeded (random, untrained) weights for
# the paper's ensemble, to measure speed and memory on the real shapes (no registry ships
# RetinaFace or ArcFace iResNet weights).
#
#   models/perf/make.sh            # -> models/perf/bundle-f32.toml + 4 ONNX files (~700 MB)
#                                  #    and models/perf/bundle-int8.toml + 4 int8 files (~176 MB)
#                                  #    (depthwise layers stay float), each
#                                  #    with the native engine's compiled files pinned
#
# RetinaFace-mobilenet0.25 (detector) + [iresnet50, iresnet100, iresnet100] (m0, m1, m2).
# Deterministic: the same seeds give the same bytes, so the sha256 in the manifest is stable.
# Set GESTALT_EDGE to use an already built binary (default: cargo run --release).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if [[ -n "${GESTALT_EDGE:-}" ]]; then
  bin=("$GESTALT_EDGE")
else
  bin=(cargo run --quiet --release --locked --)
fi

synth() { # arch file seed
  if [[ ! -f "$2" ]]; then
    "${bin[@]}" model synth --arch "$1" --out "$2" --seed "$3" >&2
  fi
  sha256sum "$2" | cut -d' ' -f1
}

det=$(synth retinaface-mnet025 retinaface-mnet025.onnx 100)
m0=$(synth iresnet50 m0-iresnet50.onnx 10)
m1=$(synth iresnet100 m1-iresnet100.onnx 11)
m2=$(synth iresnet100 m2-iresnet100.onnx 12)

embedder() { # name file sha
  cat <<TOML

[[embedders]]
name = "$1"
file = "$2"
sha256 = "$3"
input = { width = 112, height = 112, channel_order = "rgb", mean = [127.5, 127.5, 127.5], scale = [0.0078431373, 0.0078431373, 0.0078431373] }
output = "embedding"
width = 512
TOML
}

tmp=$(mktemp bundle-f32.toml.XXXXXX)
{
  cat <<TOML
# Perf bundle (f32): the paper's ensemble at full size with random weights, made by
# models/perf/make.sh. For speed and memory measurements only: it finds no real faces.

[bundle]
name = "perf-f32"
version = "1"
description = "RetinaFace-mnet0.25 + iResNet-50/100/100, architecture-exact, seeded random weights"

[detector]
kind = "retinaface"
file = "retinaface-mnet025.onnx"
sha256 = "$det"
input = { width = 640, height = 640, channel_order = "bgr", mean = [104.0, 117.0, 123.0], scale = [1.0, 1.0, 1.0] }
score_threshold = 0.02
nms_iou = 0.4
outputs = ["loc", "conf", "landms"]
TOML
  embedder m0 m0-iresnet50.onnx "$m0"
  embedder m1 m1-iresnet100.onnx "$m1"
  embedder m2 m2-iresnet100.onnx "$m2"
} >"$tmp"
mv "$tmp" bundle-f32.toml
echo "models/perf/bundle-f32.toml: detector $det"

# The int8 ensemble: calibrated on the demo photos (faces found by the perf detector itself;
# its weights are random, so they are arbitrary crops, which is all a speed measurement
# needs). Options chosen by measurement (README, speed): symmetric i8 activations, depthwise
# layers in float; the fully connected layers in int8 (the native engine packs them once: a
# quarter of the float layers' 154 MB, and faster), and so are both ends (the first layer's
# input is 8-bit pixels already).
if [[ ! -f bundle-int8.toml ]]; then
  [[ -d ../demo/photos ]] || { echo "make.sh: models/demo/photos missing: run scripts/setup.sh" >&2; exit 2; }
  "${bin[@]}" model quantize --bundle bundle-f32.toml --calib ../demo/photos --out bundle-int8.toml \
    --symmetric --float-depthwise
fi

# The native engine's compiled files (the detector's and the three embedders'), pinned in
# both manifests.
"${bin[@]}" model compile --no-cache --bundle bundle-f32.toml
"${bin[@]}" model compile --no-cache --bundle bundle-int8.toml
