#!/bin/bash
# Issue 15 (in progress): the digits run with held-out images (--holdout 0.1, the default), every stage, then
# compare with every baseline. Resumable: run it again after an interruption; run and log in runs/. The LUT is the
# Intel Xeon's (0c50a7011ece): training may resume on another machine (--allow-foreign-lut, the search only reads the
# table), but compare measures latencies, so run it where the table was profiled or refuse the foreign table.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
LUT=docs/results/xeon/correlate-32/res32-v2.json
RUN=runs/train-digits-holdout
RESUME=$([ -d $RUN ] && echo --resume)
/usr/bin/time -f "train %e s" instanas train --dataset digits --workers 0 --pretrain-epochs 40 --search-epochs 20 \
    --finetune-epochs 40 --lut $LUT --allow-foreign-lut --out $RUN $RESUME || exit 1
/usr/bin/time -f "compare %e s" instanas compare --run $RUN -r 32 --lut $LUT --workers 0 --retrain --measure 5
