#!/usr/bin/env bash
# Does `aetl rank` predict which source helps? Nine (source, target) pairs from the bundled
# domains: finetune and scratch measured with `aetl train` (2 seeds, 100 target images,
# 10 labels per class, 300 target steps), every source scored with `aetl rank`, then the
# Spearman correlation between each score and the measured gain (scripts/rank_correlation.py).
#   bash scripts/rank_grid.sh [OUT_DIR]       (docs/results.md: "Ranking sources")
# Needs the Fashion-MNIST IDX files (apt-get install dataset-fashion-mnist).
set -euo pipefail
out=${1:-multirun/rank_grid}
export AETL_CACHE_DIR=${AETL_CACHE_DIR:-$out/cache}
python "$(dirname "$0")/export_digits.py" "$out/digits_png" > /dev/null
common=(trainer.progress=false trainer.threads=1 seed=0,1 data.target.labels_per_class=10)
folder=(data/target=folder "data.target.root=$out/digits_png")

# Targets with a fixed fit: scratch uses no source model, so one scratch stands for every source.
aetl train -m data=mnist_digits data/source=mnist,fashion_mnist strategy=finetune "${common[@]}" \
  hydra.sweep.dir="$out/digits/finetune"
aetl train -m data=mnist_digits strategy=scratch "${common[@]}" hydra.sweep.dir="$out/digits/scratch"
aetl train -m data=fashion_mnist data/source=fashion_mnist,digits strategy=finetune "${common[@]}" \
  hydra.sweep.dir="$out/mnist/finetune"
aetl train -m data=fashion_mnist strategy=scratch "${common[@]}" hydra.sweep.dir="$out/mnist/scratch"
aetl train -m data=mnist_mnist_m data/source=mnist,fashion_mnist,digits strategy=finetune "${common[@]}" \
  hydra.sweep.dir="$out/mnist_m/finetune"
aetl train -m data=mnist_mnist_m strategy=scratch "${common[@]}" hydra.sweep.dir="$out/mnist_m/scratch"
# The digits as a user's folder (fit: auto, chosen with each source's Mf: scratch too).
aetl train -m data=mnist_digits "${folder[@]}" data/source=mnist,fashion_mnist strategy=scratch,finetune \
  "${common[@]}" hydra.sweep.dir="$out/folder"

aetl report "$out"/digits "$out"/mnist "$out"/mnist_m "$out"/folder --out "$out/report"

rank=(trainer.progress=false trainer.threads=1 data.target.labels_per_class=10)
aetl rank data=mnist_digits 'sources=[mnist,fashion_mnist]' "${rank[@]}" hydra.run.dir="$out/rank/digits"
aetl rank data=fashion_mnist 'sources=[fashion_mnist,digits]' "${rank[@]}" hydra.run.dir="$out/rank/mnist"
aetl rank data=mnist_mnist_m 'sources=[mnist,fashion_mnist,digits]' "${rank[@]}" hydra.run.dir="$out/rank/mnist_m"
aetl rank data=mnist_digits "${folder[@]}" 'sources=[mnist,fashion_mnist]' "${rank[@]}" \
  hydra.run.dir="$out/rank/folder"

python "$(dirname "$0")/rank_correlation.py" "$out/report/report.csv" "$out"/rank/*/rank.json
