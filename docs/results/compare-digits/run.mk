# Issue 15: the digits run with held-out images (--holdout 0.1, the default) and every baseline, at half the budget
# of the README's digits run (pre-training 16, search 10, re-training 20 epochs; BlockDrop 10 + 20, ConvNet-AIG 20),
# so that all of it fits in one 3-hour session on 2 cores. Run from the repository root, with `instanas` on PATH:
#
#     make -j2 -f docs/results/compare-digits/run.mk LUT=docs/results/compare-digits/lut-res32.json
#
# Two jobs at a time, one thread each, in the order their inputs allow (make's -j2); every stage is resumable, so the
# same command continues after an interruption. Training jobs evaluate with --measure 0 (no timing while another job
# runs); the last step, `compare` with every method, runs alone: it loads what was trained, measures, and copies
# the table, the plot, the one-shot scores and every stage's metrics into docs/results/compare-digits/.
LUT ?= docs/results/compare-digits/lut-res32.json
RUN ?= runs/train-digits-holdout
OUT ?= docs/results/compare-digits
DONE := $(RUN)/.done
TRAIN := OMP_NUM_THREADS=1 instanas train --dataset digits --workers 0 --pretrain-epochs 16 --search-epochs 10 \
	--finetune-epochs 20 --lut $(LUT) --out $(RUN) --resume
BASELINES := --blockdrop-curriculum-epochs 10 --blockdrop-joint-epochs 20 --aig-epochs 20
TRAINING := OMP_NUM_THREADS=1 instanas compare --run $(RUN) -r 32 --lut $(LUT) --workers 0 $(BASELINES) --retrain \
	--measure 0 --out $(RUN)/compare --method

all: $(DONE)/compare

$(DONE)/pretrain:
	mkdir -p $(DONE)
	$(TRAIN) --stage pretrain
	touch $@
$(DONE)/search: $(DONE)/pretrain
	$(TRAIN) --stage search
	touch $@
$(DONE)/mobilenetv2:
	mkdir -p $(DONE)
	$(TRAIN) --stage mobilenetv2
	touch $@
# one-shot scores children with the pre-trained meta-graph, then re-trains five frontier points
$(DONE)/oneshot: $(DONE)/pretrain $(DONE)/mobilenetv2
	$(TRAINING) oneshot
	touch $@
$(DONE)/instanas: $(DONE)/search $(DONE)/mobilenetv2
	$(TRAINING) instanas
	touch $@
$(DONE)/widths $(DONE)/blockdrop $(DONE)/convnet-aig: $(DONE)/mobilenetv2
	$(TRAINING) $(subst widths,mobilenetv2,$(notdir $@))
	touch $@
$(DONE)/compare: $(DONE)/oneshot $(DONE)/instanas $(DONE)/widths $(DONE)/blockdrop $(DONE)/convnet-aig
	/usr/bin/time -f "compare %e s" instanas compare --run $(RUN) -r 32 --lut $(LUT) --workers 0 $(BASELINES) \
		--retrain --measure 5 --out $(RUN)/compare
	cp $(RUN)/compare/table.* $(RUN)/compare/frontier.png $(RUN)/compare/oneshot.csv $(RUN)/metrics-*.csv $(OUT)/
	touch $@
