#!/usr/bin/env bash
# Builds the software GPU's cdylib and makes a folder of links through which cudarc loads it
# as the CUDA driver and cuBLASLt:
#   libcuda.so, libcuda.so.1, libcublasLt.so, libcublasLt.so.12 -> libkiln_softgpu.so
# Usage: softgpu/make-libdir.sh [--release] DIR
# Then run kiln with the printed `export LD_LIBRARY_PATH=...` line.
set -euo pipefail

profile=debug
build_args=()
dir=""
for arg in "$@"; do
    case "$arg" in
        --release) profile=release; build_args+=(--release) ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        -*) echo "unknown option $arg" >&2; exit 2 ;;
        *) [ -z "$dir" ] || { echo "one DIR only" >&2; exit 2; }; dir="$arg" ;;
    esac
done
[ -n "$dir" ] || { echo "usage: $0 [--release] DIR" >&2; exit 2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
cargo build -p kiln-softgpu ${build_args[@]+"${build_args[@]}"} >&2
target="$(cargo metadata --format-version 1 --no-deps | grep -o '"target_directory":"[^"]*"' | sed 's/.*:"\(.*\)"/\1/')"
lib="$target/$profile/libkiln_softgpu.so"
[ -f "$lib" ] || { echo "no $lib after the build" >&2; exit 1; }

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
for name in libcuda.so libcuda.so.1 libcublasLt.so libcublasLt.so.12; do
    ln -sfn "$lib" "$dir/$name"
done
echo "export LD_LIBRARY_PATH=$dir\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
