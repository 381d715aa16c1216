#!/usr/bin/env bash
# Embed an archive as a SLURM job array of N shards, then merge the parts in a dependent job.
#
#   N=16 ARCHIVE=/data/s2/scenes OUT=/scratch/$USER/emb ./examples/slurm_embed_array.sh
#
# Each array task runs `spectraclip embed ... --shard I/N` (I = 1..N): shard I takes the I-th of N
# contiguous blocks of the sorted item ids (every task must list the same inputs; each part records a
# digest of the listing and embed-merge refuses parts of different listings). A task that is killed or
# times out resumes where it stopped when requeued (its finished batches are kept in OUT/part-I.parquet.parts).
# The merge job checks the parts (one model, each item once, no shard missing) and writes one table that
# `spectraclip index build` reads directly.
set -euo pipefail

N=${N:-8}
ARCHIVE=${ARCHIVE:?set ARCHIVE to the scenes (or chip folders) to embed}
OUT=${OUT:?set OUT to a folder for the parts and the merged table}
MODEL=${MODEL:-Llama3-MS-CLIP-Base}
BANDS=${BANDS:-s2-l2a}
# scene windows on a grid of model-input-sized cells (Major TOM rows); drop for chip folders
EMBED_ARGS=${EMBED_ARGS:---windows --tile 224}
mkdir -p "$OUT/logs"

array_id=$(sbatch --parsable \
  --job-name=embed-shard --array=1-"$N" --requeue \
  --gres=gpu:1 --cpus-per-task=8 --mem=32G --time=04:00:00 \
  --output="$OUT/logs/shard-%a.log" \
  --wrap="spectraclip embed $ARCHIVE -m $MODEL --bands $BANDS $EMBED_ARGS --workers 6 \
          --shard \$((SLURM_ARRAY_TASK_ID))/$N -o $OUT/part-\$((SLURM_ARRAY_TASK_ID)).parquet")

# afterok: only when every shard succeeded (use afterany and let embed-merge report missing shards instead)
sbatch --dependency=afterok:"$array_id" --job-name=embed-merge --cpus-per-task=2 --mem=16G --time=01:00:00 \
  --output="$OUT/logs/merge.log" \
  --wrap="spectraclip embed-merge $OUT/part-*.parquet -o $OUT/embeddings.parquet && \
          spectraclip index build $OUT/embeddings.parquet -o $OUT/index"

echo "submitted array $array_id ($N shards) and its merge; parts and logs in $OUT"
