#!/usr/bin/env bash
# Times `kiln render --dry-run` on a generated file of 100,000 request lines (text to image, the
# demo model's family, 1 line in 10 invalid in one of several ways) and prints each run's wall
# time and their median. Usage, from the repository root after `cargo build --release -p kiln-cli`:
#   bash benches/scripts/dry_run_100k.sh [RUNS]
set -euo pipefail
runs=${1:-5}
kiln=${KILN:-target/release/kiln}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$work/requests.jsonl" <<'PY'
import json, random, sys
rng = random.Random(0)
samplers = ["DDIM", "K_EULER", "K_EULER_ANCESTRAL", "DPM_PLUS_PLUS_2M_KARRAS", "DPM_PLUS_PLUS_SDE_KARRAS"]
sizes = [(1024, 1024), (832, 1216), (1216, 832), (640, 1536)]
words = "a red boat on a quiet lake at dawn, watercolour, (mist:1.2), mountains, reflections".split()
with open(sys.argv[1], "w") as f:
    for i in range(100_000):
        w, h = rng.choice(sizes)
        req = {
            "id": f"req-{i}",
            "prompt": " ".join(rng.choice(words) for _ in range(rng.randint(5, 40))),
            "negative_prompt": "blurry, low quality",
            "sampler": rng.choice(samplers),
            "steps": rng.randint(10, 50),
            "cfg_scale": round(rng.uniform(3, 12), 1),
            "width": w,
            "height": h,
            "seed": rng.randint(1, 2**32 - 1),
            "num_images": rng.randint(1, 4),
        }
        bad = i % 10 == 9
        kind = (i // 10) % 4
        if bad and kind == 0:
            req["width"] = 100
        elif bad and kind == 1:
            req["sampler"] = "NOT_A_SAMPLER"
        elif bad and kind == 2:
            req["steps"] = -3
        line = json.dumps(req)
        if bad and kind == 3:
            line = line[: len(line) // 2]  # malformed JSON
        f.write(line + "\n")
PY

# Wall time, and the CPU time (user + system) of kiln, which other load on the machine does not
# inflate as much.
times=()
for run in $(seq "$runs"); do
    status=0
    /usr/bin/time -f "%e %U %S" -o "$work/time" \
        "$kiln" render "$work/requests.jsonl" --out "$work/out" --dry-run 2> "$work/stderr" || status=$?
    [ "$status" = 1 ] || { echo "unexpected exit status $status"; cat "$work/stderr"; exit 1; }
    read -r wall user sys < <(tail -n 1 "$work/time")
    cpu=$(echo "$user + $sys" | bc)
    times+=("$wall $cpu")
    echo "run $run: wall ${wall} s, cpu ${cpu} s ($(tail -n 1 "$work/stderr"))"
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
wall=$(printf '%s\n' "${times[@]}" | cut -d' ' -f1 | median)
cpu=$(printf '%s\n' "${times[@]}" | cut -d' ' -f2 | median)
echo "median of $runs runs: wall $wall s, cpu $cpu s"
