#!/usr/bin/env bash
# Cross-builds the binary for 64-bit ARM (Raspberry Pi 4/5, Jetson) and checks it under
# qemu-aarch64, on the CPU models of a Raspberry Pi 4 (cortex-a72: NEON kernels) and a Pi 5
# (cortex-a76: adds the dot-product int8 kernels): the native engine's deterministic kernel
# pick (`model kernels`: the dot-product int8 kernel on A76, not on A72), and one demo photo
# against a two-person gallery, single detection pass, SFace on the native engine with
# kernels by CPU features (timing under an emulator means nothing). Correctness only, not
# speed.
#
# CROSS_PROFILE picks the cargo profile: release (default, the binary a package ships) or
# dev (CI: dependencies optimised, no link-time optimisation; minutes faster to build). qemu's default CPU ("max") has
# SVE/SME, which tract then picks and qemu emulates ~35x slower still (1048 s against 29 s).
#
# Needs (Debian): gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user, and
# `rustup target add aarch64-unknown-linux-gnu`; the demo bundle from scripts/setup.sh.
# Output goes to target/aarch64-unknown-linux-gnu/release/ (debug/ with CROSS_PROFILE=dev;
# CARGO_TARGET_DIR may move it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

triple=aarch64-unknown-linux-gnu
sysroot=/usr/aarch64-linux-gnu
for tool in aarch64-linux-gnu-gcc qemu-aarch64; do
    command -v "$tool" >/dev/null || {
        echo "cross-aarch64: $tool is missing (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)" >&2
        exit 2
    }
done
rustup target list --installed 2>/dev/null | grep -qx "$triple" || rustup target add "$triple"
[ -f models/demo/sface.onnx ] || {
    echo "cross-aarch64: the demo bundle is missing: run scripts/setup.sh first" >&2
    exit 2
}

export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
target_dir=${CARGO_TARGET_DIR:-target}

profile=${CROSS_PROFILE:-release}
case "$profile" in
release) out=release ;;
dev) out=debug ;;
*)
    echo "cross-aarch64: CROSS_PROFILE must be release or dev" >&2
    exit 2
    ;;
esac
t0=$(date +%s)
cargo build --locked --profile "$profile" --target "$triple" --bin gestalt-edge
t1=$(date +%s)
arm_bin="$target_dir/$triple/$out/gestalt-edge"
file "$arm_bin" 2>/dev/null | grep -q aarch64 || [ ! -x /usr/bin/file ] || {
    echo "cross-aarch64: $arm_bin is not an aarch64 binary" >&2
    exit 1
}

# The gallery is built by the host binary: the file format must be the same on both sides.
# CROSS_HOST_BIN names one already built (CI: the binary `cargo test --all-features` built
# for the integration tests; a plain `cargo build` after it rebuilt the crate for 3.5 minutes
# in a CI run); otherwise it is built here.
host_bin=${CROSS_HOST_BIN:-}
if [ -z "$host_bin" ]; then
    cargo build --locked --bin gestalt-edge
    host_bin="$target_dir/debug/gestalt-edge"
fi
[ -x "$host_bin" ] || {
    echo "cross-aarch64: no host binary at $host_bin" >&2
    exit 2
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf 'image,label,subject\nperson_a_1.jpg,person_a,a\nperson_b_1.jpg,person_b,b\n' >"$work/labels.csv"
cp models/demo/photos/person_a_1.jpg models/demo/photos/person_b_1.jpg "$work/"
"$host_bin" gallery build --bundle models/demo/bundle.toml --labels "$work/labels.csv" \
    --out "$work/tiny.gallery" --single-pass >/dev/null
photo=models/demo/photos/person_a_2.jpg
"$host_bin" predict --bundle models/demo/bundle.toml --gallery "$work/tiny.gallery" \
    --single-pass --threads 1 --engine tract --json "$photo" >"$work/host.json"

t2=$(date +%s)
for cpu in cortex-a72 cortex-a76; do
    QEMU_CPU=$cpu qemu-aarch64 -L "$sysroot" "$arm_bin" model kernels --json >"$work/kernels-$cpu.json"
    python3 - "$work/kernels-$cpu.json" "$cpu" <<'PY'
import json, sys
k = json.load(open(sys.argv[1]))
cpu, pick = sys.argv[2], k["int8"]["by_features"]
dot = pick is not None and pick.endswith("_dot")
want = cpu == "cortex-a76"
assert k["arch"] == "aarch64", k
assert k["f32"]["by_features"], f"no f32 kernel on {cpu}: {k}"
assert pick and dot == want, f"{cpu}: int8 kernel {pick} (dot-product expected: {want}); {k}"
print(f"aarch64 ({cpu}) under qemu: native kernels f32 {k['f32']['by_features']}, int8 {pick}")
PY
    QEMU_CPU=$cpu qemu-aarch64 -L "$sysroot" "$arm_bin" predict --bundle models/demo/bundle.toml \
        --gallery "$work/tiny.gallery" --single-pass --threads 1 --engine native --kernels features \
        --json "$photo" >"$work/arm-$cpu.json"
    # Same ranking, distances within 1e-3 of the host's (different SIMD kernels, same maths).
    python3 - "$work/host.json" "$work/arm-$cpu.json" "$cpu" <<'PY'
import json, sys
host, arm = (json.load(open(p))[0] for p in sys.argv[1:3])
hs, as_ = host["suggested_syndromes_list"], arm["suggested_syndromes_list"]
names = [s["syndrome_name"] for s in hs]
assert names == [s["syndrome_name"] for s in as_], f"ranking differs: {names} vs {as_}"
assert names[0] == "person_a", f"top-1 is {names[0]}, expected person_a"
worst = max(abs(h["distance"] - a["distance"]) for h, a in zip(hs, as_))
assert worst < 1e-3, f"distances differ by {worst}"
print(f"aarch64 ({sys.argv[3]}) under qemu: top-1 {names[0]} (distance {as_[0]['distance']:.4f}), "
      f"max |host - aarch64| distance {worst:.2e}")
PY
done
t3=$(date +%s)

echo "cross-aarch64: build $((t1 - t0)) s, qemu prediction $((t3 - t2)) s"
