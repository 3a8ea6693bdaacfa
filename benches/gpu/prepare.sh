#!/usr/bin/env bash
# Builds, on the CPU machine, everything benches/gpu/run.sh runs on the device, into .gpu/
# (git-ignored; the device tool carries it): the release `kiln` with --features cuda, the kernel
# tests, the pipeline's CUDA parity tests, the GPU benches (stripped, xz-packed), and the
# diffusers wheel the device's Python lacks (its other needs are there).
#
#   bash benches/gpu/prepare.sh
#
# The device's image has no Rust toolchain, so binaries travel; they need only glibc, libcuda,
# NVRTC and cuBLASLt there. The working tree travels too, under a 64 MiB limit with .gpu/:
# the script prints the total.
set -euo pipefail
cd "$(dirname "$0")/../.."
pack=$(mktemp -d)
trap 'rm -rf "$pack"' EXIT

# name -> executable, from cargo's JSON messages.
executables() {
    python3 -c 'import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["name"], m["executable"])'
}

cargo build --release -p kiln-cli --features cuda --locked
cp target/release/kiln "$pack/kiln"
{
    cargo test --release -p kiln-kernels --locked --no-run --message-format=json \
        | executables | sed 's/^/test_/'
    cargo test --release -p kiln-pipeline --features cuda --locked --test unet_parity --test pipeline_parity \
        --no-run --message-format=json | executables | sed 's/^/test_/'
    cargo bench -p kiln-benches --features cuda --locked --bench cuda_attention --bench cuda_norm --bench cuda_conv \
        --no-run --message-format=json | executables | sed 's/^/bench_/'
} | while read -r name exe; do
    cp "$exe" "$pack/$name"
done
strip "$pack"/*
# The tests find their fixtures by the absolute path they were built at.
pwd > "$pack/BUILT_AT"

mkdir -p .gpu
rm -f .gpu/*
tar -cJf .gpu/bin.tar.xz -C "$pack" .
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 -d .gpu diffusers==0.42.1 importlib_metadata==8.7.0
ls -la .gpu
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s}')
gpu_bytes=$(du -cb .gpu | tail -1 | cut -f1)
echo "travels: working tree $((tree_bytes / 1048576)) MiB + .gpu $((gpu_bytes / 1048576)) MiB (limit 64 MiB)"
