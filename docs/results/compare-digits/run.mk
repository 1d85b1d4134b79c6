# Issue 15: the digits run with held-out images (--holdout 0.1, the default) and every baseline, at a budget that fits
# in one 3-hour session on 2 cores: pre-training 12, search 8, re-training 12 epochs (every re-trained network alike:
# MobileNetV2 widths, one-shot frontier points, InstaNAS snapshots, BlockDrop's joint stage, ConvNet-AIG); BlockDrop's
# curriculum 10 epochs (one per droppable cell); 150 one-shot children, three of their frontier points re-trained;
# three InstaNAS snapshots re-trained (search epochs 0, 4, 7).
# Run from the repository root, with `instanas` on PATH (a LUT profiled and calibrated on this machine; a LUT file
# that does not exist yet is made first, into $(RUN)/lut, before any training):
#
#     make -j2 -f docs/results/compare-digits/run.mk LUT=docs/results/compare-digits/lut-res32.json
#
# Two jobs at a time, one thread each, in the order their inputs allow (make's -j2); every stage is resumable, so the
# same command continues after an interruption. Training jobs evaluate with --measure 0 (no timing while another job
# runs); the last step, `compare` with every method, runs alone: it loads what was trained, measures, and copies
# the table, the plot, the one-shot scores and every stage's metrics into docs/results/compare-digits/.
# The same recipe on another generated data set (its resolution's LUT):
#
#     make -j2 -f docs/results/compare-digits/run.mk DATASET=cluttered-digits RUN=runs/cluttered \
#         OUT=docs/results/cluttered-digits LUT=…/res32-vN.json
#
# TRAIN_FLAGS adds options to every `instanas train` (e.g. TRAIN_FLAGS="--limit-train 1437"); run.json keeps them,
# so compare uses the same images. PRETRAIN_EPOCHS, SEARCH_EPOCHS, FINETUNE_EPOCHS and BASELINES set the budget.
# Every target's wall time is appended to $(RUN)/wall-times.txt (and copied to OUT with the table), every epoch's to
# its metrics file (epoch_s).
DATASET ?= digits
# the digits tables were made with the authors' meta-graph optimiser in the search (the default before 2026-12-05)
TRAIN_FLAGS ?= --metagraph-lr 0.001 --search-momentum 0
PRETRAIN_EPOCHS ?= 12
SEARCH_EPOCHS ?= 8
FINETUNE_EPOCHS ?= 12
PRETRAIN_NEEDS ?=
RES ?= 32
LUT ?= docs/results/compare-digits/lut-res32.json
RUN ?= runs/train-digits-holdout
OUT ?= docs/results/compare-digits
DONE := $(RUN)/.done
TIMED = /usr/bin/time -a -o $(RUN)/wall-times.txt -f "$(notdir $@) %e s"
TRAIN = $(TIMED) env OMP_NUM_THREADS=1 instanas train --dataset $(DATASET) --workers 0 \
	--pretrain-epochs $(PRETRAIN_EPOCHS) --search-epochs $(SEARCH_EPOCHS) --finetune-epochs $(FINETUNE_EPOCHS) \
	--lut $(LUT) --out $(RUN) --resume $(TRAIN_FLAGS)
BASELINES ?= --blockdrop-curriculum-epochs 10 --blockdrop-joint-epochs 12 --aig-epochs 12 --oneshot-samples 150 \
	--retrain-snapshots 0,4,7 --oneshot-retrain-points 3
TRAINING = $(TIMED) env OMP_NUM_THREADS=1 instanas compare --run $(RUN) -r $(RES) --lut $(LUT) --workers 0 $(BASELINES) --retrain \
	--measure 0 --out $(RUN)/compare --method

# make -j2 starts the first buildable target of this list whenever a slot frees: the critical chain (pre-training,
# search, InstaNAS's re-training) starts each step as soon as it can, the baselines fill the other slot (listed after
# it: when one-shot came first, the search waited behind three baselines, 40 minutes of the cluttered run)
all: $(DONE)/pretrain $(DONE)/mobilenetv2 $(DONE)/search $(DONE)/instanas $(DONE)/widths $(DONE)/oneshot \
	$(DONE)/blockdrop $(DONE)/convnet-aig $(DONE)/smallest
	$(MAKE) -f $(firstword $(MAKEFILE_LIST)) DATASET=$(DATASET) RES=$(RES) LUT=$(LUT) RUN=$(RUN) OUT=$(OUT) \
		TRAIN_FLAGS="$(TRAIN_FLAGS)" PRETRAIN_EPOCHS=$(PRETRAIN_EPOCHS) SEARCH_EPOCHS=$(SEARCH_EPOCHS) \
		FINETUNE_EPOCHS=$(FINETUNE_EPOCHS) BASELINES="$(BASELINES)" PRETRAIN_NEEDS=$(PRETRAIN_NEEDS) $(DONE)/compare

# The LUT, when its file does not exist yet: this machine profiled and calibrated into $(RUN)/lut before any training
# starts (every job waits for it: nothing is timed beside training)
$(LUT):
	mkdir -p $(RUN)
	test -e $(RUN)/.profiled || { $(subst $(notdir $@),profile,$(TIMED)) env INSTANAS_LUT_DIR=$(RUN)/lut \
		instanas profile -r $(RES) && touch $(RUN)/.profiled; }
	$(subst $(notdir $@),calibrate,$(TIMED)) env INSTANAS_LUT_DIR=$(RUN)/lut instanas calibrate -r $(RES) -n 300 \
		--wait-for-speed 1 --out $(RUN)/calibrate-$(RES) --resume
	cp "$$(ls -t $(RUN)/lut/*/res$(RES)-v*.json | head -1)" $@

# with TRAIN_FLAGS="--pretrain-init mobilenetv2 …", also PRETRAIN_NEEDS=mobilenetv2: pre-training starts from it
$(DONE)/pretrain: $(addprefix $(DONE)/,$(PRETRAIN_NEEDS)) | $(LUT)
	mkdir -p $(DONE)
	$(TRAIN) --stage pretrain
	touch $@
$(DONE)/search: $(DONE)/pretrain
	$(TRAIN) --stage search
	touch $@
$(DONE)/mobilenetv2: | $(LUT)
	mkdir -p $(DONE)
	$(TRAIN) --stage mobilenetv2
	touch $@
# one-shot scores children with the pre-trained meta-graph, then re-trains three frontier points
$(DONE)/oneshot: $(DONE)/pretrain $(DONE)/mobilenetv2
	$(TRAINING) oneshot
	touch $@
$(DONE)/instanas: $(DONE)/search $(DONE)/mobilenetv2
	$(TRAINING) instanas
	touch $@
$(DONE)/widths $(DONE)/blockdrop $(DONE)/convnet-aig $(DONE)/smallest: $(DONE)/mobilenetv2
	$(TRAINING) $(subst widths,mobilenetv2,$(notdir $@))
	touch $@
$(DONE)/compare: $(DONE)/oneshot $(DONE)/instanas $(DONE)/widths $(DONE)/blockdrop $(DONE)/convnet-aig \
	$(DONE)/smallest
	$(TIMED) instanas compare --run $(RUN) -r $(RES) --lut $(LUT) --workers 0 $(BASELINES) \
		--retrain --measure 5 --out $(RUN)/compare
	mkdir -p $(OUT)
	cp $(RUN)/compare/table.* $(RUN)/compare/frontier.png $(RUN)/compare/oneshot.csv $(RUN)/metrics-*.csv \
		$(RUN)/wall-times.txt $(wildcard $(RUN)/compare/buckets.*) $(OUT)/
	touch $@
