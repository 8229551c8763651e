#!/usr/bin/env bash
# The measurements behind docs/results.md "Your own images" and "strategy=auto":
# 1. the UCI digits exported as a folder of PNGs (upright and inverted), fit left to auto,
#    finetune vs scratch (3 seeds, 100 target images, 1 label per class, 300 target steps);
# 2. strategy=auto next to the single strategies on MNIST -> digits and Fashion-MNIST -> MNIST;
# 3. fit auto against resize on the natural-image pairs (photos -> textures, MNIST -> MNIST-M);
# 4. digits on a larger sheet, not framed like MNIST: fit auto's choice per seed, with each seed's
#    own Mf and with one Mf for every seed, and each candidate fit fixed (finetune, 1 label per class).
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

python "$here/export_digits.py" "$out/sheet_d28" --invert --canvas 40 --digit 28 --shift 2 > /dev/null
python "$here/export_digits.py" "$out/sheet_d28_up" --canvas 40 --digit 28 --shift 2 --seed 3 > /dev/null
python "$here/export_digits.py" "$out/sheet_d8" --invert --canvas 40 --digit 8 --shift 4 > /dev/null
sheet=(data/target=folder strategy=finetune seed=0,1,2 data.target.labels_per_class=1 "${common[@]}")
for name in sheet_d28 sheet_d28_up sheet_d8; do
  aetl train -m "data.target.root=$out/$name" "${sheet[@]}" hydra.sweep.dir="$out/sheet/$name"
done
aetl train -m "data.target.root=$out/sheet_d28" "pretrained=$out/sheet/sheet_d28/0/checkpoints/source.pt" \
  "${sheet[@]}" hydra.sweep.dir="$out/sheet_one_mf"
aetl train -m "data.target.root=$out/sheet_d28" data.target.fit=crop data.target.margin=4,6 \
  data.target.tone=invert,match "${sheet[@]}" hydra.sweep.dir="$out/sheet_fixed/crop"
aetl train -m "data.target.root=$out/sheet_d28" data.target.fit=resize data.target.tone=invert,match "${sheet[@]}" \
  hydra.sweep.dir="$out/sheet_fixed/resize"
python "$here/fit_seeds.py" --before "$out"/sheet_d28 "$out"/sheet_d28_up "$out"/sheet_d8 \
  $(for s in 0 1 2; do echo --mf "$out/sheet/sheet_d28/$s/checkpoints/source.pt"; done)

aetl report "$out"/folder "$out"/auto_* "$out"/natural_* "$out"/sheet* --out "$out/report"
