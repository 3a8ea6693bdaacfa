#!/usr/bin/env bash
# One device call: kiln's CUDA path checked and timed on a real GPU beside diffusers.
#
# Prepared on the CPU machine by benches/gpu/prepare.sh, which builds kiln (--features cuda,
# release), the kernel tests, the pipeline's CUDA parity tests and the GPU benches, and packs
# them with the diffusers wheel into .gpu/ (git-ignored). The device tool then runs, from the
# repository root:
#
#   bash benches/gpu/run.sh        (carry: .gpu)
#   bash benches/gpu/run.sh sdxl   (the SDXL timings alone)
#
# Every step has its own time limit and goes on after a failure; logs and JSON lines land in
# $OUT, and the last lines printed are one table (benches/gpu/table.py).
set -uo pipefail
root=$PWD
out=${OUT:-/tmp/kiln-gpu-out}
mkdir -p "$out"
started=$SECONDS
limit=${KILN_GPU_LIMIT_S:-540} # the whole script's time: a step that would not fit is skipped
step() { echo "== $* (t=$((SECONDS - started)) s)"; }
room() { # SECONDS: true when a step that long still fits
    if [ $((SECONDS - started + $1)) -gt "$limit" ]; then echo "skipped: under $1 s left"; return 1; fi
}

step machine
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv | tee "$out/gpu.txt"
nproc; python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)'

step unpack
# A machine kept warm between calls keeps /tmp: start the renders afresh (kiln would resume them).
rm -rf /tmp/demo /tmp/out_* /tmp/mem_*
bin=/tmp/kiln-bin
mkdir -p "$bin"
tar -xJf .gpu/bin.tar.xz -C "$bin" \
    || python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' .gpu/bin.tar.xz "$bin"
ls "$bin"
# The test binaries name fixtures by the absolute path they were built at.
built_at=$(cat "$bin/BUILT_AT")
if [ "$built_at" != "$root" ] && [ ! -e "$built_at" ]; then
    mkdir -p "$(dirname "$built_at")" && ln -s "$root" "$built_at"
fi
# cudarc opens libnvrtc.so / libcublasLt.so by their plain names: link the toolkit's ones.
lib=/tmp/kiln-lib
mkdir -p "$lib"
for name in nvrtc cublasLt cublas; do
    found=$(find /usr/local/cuda/ /usr/local/cuda*/ /opt/torch/.venv/ -name "lib$name.so*" -not -path '*/stubs/*' 2>/dev/null | sort -V | tail -1)
    if [ -n "$found" ]; then
        ln -sf "$found" "$lib/lib$name.so"
        echo "lib$name.so -> $found"
        LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
done
export LD_LIBRARY_PATH="$lib:$LD_LIBRARY_PATH"
export KILN_REQUIRE_GPU=1 KILN_CACHE_DIR=/tmp/kiln-kernel-cache
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/*.whl
export PYTHONPATH=/tmp/site

step "random full-size weights (in the background) and kiln on the demo model (compiles the kernels)"
(python3 benches/gpu/make_random_pipeline.py sdxl_base /tmp/sdxl && [ "${1:-}" != sdxl ] \
    && python3 benches/gpu/make_random_pipeline.py sd15 /tmp/sd15) \
    > "$out/side.log" 2>&1 &
weights=$!
timeout 180 "$bin/kiln" render examples/requests.jsonl --out /tmp/demo --device cuda --dtype bf16 --progress-interval 0 2>&1 | tail -4
wait $weights
grep -E 'parameters|Error' "$out/side.log" | tail -8

# kiln: a JSONL per measurement, a 2-step warm-up group first (weights, kernels, cuBLASLt
# plans), then the timed group; prediction_time_ms is each group's render time per image.
requests() { # size steps count label batch
    python3 - "$@" <<'PY'
import json, sys
size, steps, count, name, batch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
common = {"prompt": "a photograph of an astronaut riding a horse on the moon, highly detailed",
          "negative_prompt": "blurry", "width": size, "height": size, "cfg_scale": 7,
          "sampler": "K_EULER", "use_refiner": False}
# Groups run in order of first appearance: warm-up (3 steps at the timed batch size), a 2-step
# group of one batch, then the timed group; the difference of the last two gives one step.
print(json.dumps({"id": "warm", **common, "steps": 3, "num_images": batch, "seed": 1}))
for i in range(batch):
    print(json.dumps({"id": f"short_{i}", **common, "steps": 2, "seed": 5 + i}))
for i in range(count):
    print(json.dumps({"id": f"{name}_{i}", **common, "steps": steps, "seed": 10 + i}))
PY
}
kiln_time() { # label model size steps count batch limit
    local label=$1 model=$2 size=$3 steps=$4 count=$5 batch=$6
    requests "$size" "$steps" "$count" "$label" "$batch" > "/tmp/$label.jsonl"
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "/tmp/mem_$label.txt" &
    local smi=$!
    local left=$((limit - (SECONDS - started) - 5))
    [ "$left" -lt "$7" ] && set -- "$1" "$2" "$3" "$4" "$5" "$6" "$left"
    timeout "$7" "$bin/kiln" render "/tmp/$label.jsonl" --out "/tmp/out_$label" --model "$model" \
        --device cuda --dtype bf16 --batch-size "$batch" --skip-weight-check --progress-interval 0 2>&1 | tail -3
    kill $smi 2>/dev/null
    python3 - "$label" "/tmp/out_$label/responses.jsonl" "/tmp/mem_$label.txt" "$batch" "$steps" <<'PY' | tee -a "$out/results.jsonl"
import json, statistics, sys
label, path, mem, batch, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
times, short = [], []
for line in open(path):
    r = json.loads(line)
    if "prediction_time_ms" not in r:
        continue
    if r["id"].startswith(label):
        times.append(r["prediction_time_ms"] / 1000)
    elif r["id"].startswith("short_"):
        short.append(r["prediction_time_ms"] / 1000)
peak = max((int(x) for x in open(mem).read().split() if x.isdigit()), default=0)
step = None
if times and short:  # one CFG step (UNet at batch 2 x images, sampler) of one batch
    step = (statistics.median(times) - statistics.median(short)) * batch / (steps - 2)
print(json.dumps({"what": f"kiln_{label}", "seconds_per_image": times, "short_seconds_per_image": short,
                  "batch": batch, "seconds_per_step_of_batch": step, "peak_device_mib_nvidia_smi": peak}))
PY
}

step "kiln SDXL 1024, 30 steps"
room 60 && kiln_time sdxl_b1 /tmp/sdxl 1024 30 2 1 200
room 60 && kiln_time sdxl_b4 /tmp/sdxl 1024 30 8 4 200

step "diffusers SDXL 1024, 30 steps"
room 60 && timeout 150 python3 benches/gpu/diffusers_time.py sdxl /tmp/sdxl --size 1024 --steps 30 --batches 1 4 \
    --repeat 3 2>>"$out/side.log" | tee -a "$out/results.jsonl"

if [ "${1:-}" = sdxl ]; then
    room 20 && timeout 30 python3 benches/gpu/diffusers_time.py matmul 2>>"$out/side.log" | tee -a "$out/results.jsonl"
    python3 benches/gpu/table.py "$out/results.jsonl"
    exit 0
fi

step "SD 1.5 512, 50 steps"
room 40 && kiln_time sd15_b1 /tmp/sd15 512 50 2 1 120
room 40 && timeout 90 python3 benches/gpu/diffusers_time.py sd15 /tmp/sd15 --size 512 --steps 50 --batches 1 \
    --repeat 3 2>>"$out/side.log" | tee -a "$out/results.jsonl"
room 20 && timeout 30 python3 benches/gpu/diffusers_time.py matmul 2>>"$out/side.log" | tee -a "$out/results.jsonl"

step "kernel tests on the GPU"
for t in attention conv gpu_norm_elementwise; do
    room 60 || continue
    timeout 60 "$bin/test_$t" > "/tmp/test_$t.log" 2>&1
    echo "test $t: rc=$? $(grep -E '^test result' "/tmp/test_$t.log" | tail -1)"
    cat "/tmp/test_$t.log" >> "$out/tests.log"
done

step "pipeline CUDA parity tests on the GPU"
for t in unet_parity pipeline_parity; do
    room 90 || continue
    timeout 90 "$bin/test_$t" cuda > "/tmp/test_$t.log" 2>&1
    echo "test $t: rc=$? $(grep -E '^test result' "/tmp/test_$t.log" | tail -1)"
    grep -E 'FAILED|panicked' "/tmp/test_$t.log" | head -5
    cat "/tmp/test_$t.log" >> "$out/tests.log"
done

step "kernel benches"
for b in cuda_attention cuda_norm cuda_conv; do
    room 40 || continue
    timeout 40 "$bin/bench_$b" --bench --warm-up-time 0.2 --measurement-time 0.5 > "/tmp/bench_$b.log" 2>&1
    grep -E 'TFLOP/s|GB/s' "/tmp/bench_$b.log" | head -12
    cat "/tmp/bench_$b.log" >> "$out/benches.log"
done

step done
python3 benches/gpu/table.py "$out/results.jsonl"
