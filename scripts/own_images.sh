#!/usr/bin/env bash
# The measurements behind docs/results.md "Your own images" and "strategy=auto":
# 1. the UCI digits exported as a folder of PNGs (upright and inverted), fit left to auto,
#    finetune vs scratch (3 seeds, 100 target images, 1 label per class, 300 target steps);
# 2. strategy=auto next to the single strategies on MNIST -> digits and Fashion-MNIST -> MNIST;
# 3. fit auto against resize on the natural-image pairs (photos -> textures, MNIST -> MNIST-M).
#   bash scripts/own_images.sh [OUT_DIR]       (needs: apt-get install dataset-fashion-mnist)
set -euo pipefail
out=${1:-multirun/own_images}
export AETL_CACHE_DIR=${AETL_CACHE_DIR:-$out/cache}
here=$(dirname "$0")
python "$here/export_digits.py" "$out/digits_png" > /dev/null
python "$here/export_digits.py" "$out/digits_png_inv" --invert > /dev/null
common=(trainer.progress=false)

aetl train -m data/target=folder "data.target.root=$out/digits_png,$out/digits_png_inv" strategy=scratch,finetune \
  seed=0,1,2 data.target.labels_per_class=1 "${common[@]}" hydra.sweep.dir="$out/folder"
aetl train -m data=mnist_digits strategy=scratch,finetune,mixed,auto seed=0,1,2 data.target.labels_per_class=1,10 \
  "${common[@]}" hydra.sweep.dir="$out/auto_mnist_digits"
aetl train -m data=fashion_mnist strategy=scratch,finetune,auto seed=0,1,2 data.target.labels_per_class=1,10 \
  "${common[@]}" hydra.sweep.dir="$out/auto_fashion_mnist"
for pair in photos_textures mnist_mnist_m; do  # the pair's own fit (resize, keep) against auto
  aetl train -m data=$pair strategy=scratch,finetune seed=0,1 "${common[@]}" hydra.sweep.dir="$out/natural_$pair/resize"
  aetl train -m data=$pair data.target.fit=auto data.target.tone=auto strategy=scratch,finetune seed=0,1 \
    "${common[@]}" hydra.sweep.dir="$out/natural_$pair/auto"
done

aetl report "$out"/folder "$out"/auto_* "$out"/natural_* --out "$out/report"
