#!/bin/bash
# One JSONL over a Slurm job array, one GPU per task:
#
#   sbatch --array=0-7 examples/slurm/render-array.sh
#   # once every task has finished (any exit), combine them:
#   sbatch --dependency=afterany:JOBID --wrap "kiln merge $OUT $OUT/shard-*-of-8 --requests $REQUESTS"
#
# Each task renders the lines whose id hashes to its index (`--shard auto` reads
# SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN and SLURM_ARRAY_TASK_COUNT) into $OUT/shard-I-of-N on
# the shared file system, with its own journal: a requeued or resubmitted task resumes where it
# stopped. `kiln merge` writes $OUT/responses.jsonl in input order, or lists the ids still
# missing (exit 1): resubmit those array indices (`sbatch --array=3,5 ...`) and merge again.
#SBATCH --job-name=kiln-render
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --output=kiln-render-%A_%a.log
set -uo pipefail

REQUESTS=${REQUESTS:-$HOME/kiln/requests.jsonl}   # on a file system every node sees
OUT=${OUT:-$HOME/kiln/out}
MODEL=${MODEL:-$HOME/kiln/models/sd_xl_base_1.0.safetensors}
ASSETS=${ASSETS:-$HOME/kiln/assets}

kiln render "$REQUESTS" --out "$OUT" --model "$MODEL" --assets "$ASSETS" \
    --device cuda --dtype bf16 --batch-size 4 --save-images --shard auto
status=$?
# 1 means some lines got error records (they are answered): the task itself succeeded.
if [ "$status" -le 1 ]; then exit 0; fi
exit "$status"
