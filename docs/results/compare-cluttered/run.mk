# Issue 33: the whole cluttered pipeline in one command, resumable, at a budget of about two and a half hours on 2
# cores: this machine's LUT (profile, then calibrate on 300 children), MobileNetV2 0.4/1.0/1.4x, InstaNAS (pre-training
# 10 epochs at SGD 0.02, search 6 with the meta-graph at SGD 0.01 and momentum 0.9 and the bound ending at 0.58x
# MobileNetV2 (so that the last policy, controller included, stays under 0.7x), the last snapshot fine-tuned from
# the search's weights for 15 epochs at Adam 0.001), the space's smallest architecture (the data's floor), one-shot
# (100 children scored, the cheapest frontier point re-trained), BlockDrop (curriculum 5, joint 15) and ConvNet-AIG
# (15, both at their batch 32), every re-training 15 epochs at batch 64, on 4,000 of cluttered MNIST's 8,000 training
# images (3,600 after the 10 % held out), validated on all 2,000. Run from the repository root with `instanas` on PATH:
#
#     make -j2 -f docs/results/compare-cluttered/run.mk
#
# The reward ablation, the same pre-training searched and re-trained again with --reward falling in $(RUN)-falling,
# tabulated beside the run by `instanas ablation` into $(OUT)/ablation-reward:
#
#     make -j2 -f docs/results/compare-cluttered/run.mk ablation
#
# Every stage's wall time goes to $(RUN)/wall-times.txt; the last step, the comparison with every method, runs alone
# and copies the table, buckets, frontier and metrics into $(OUT). The recipe is docs/results/compare-digits/run.mk's.
# The first table's budget (5 pre-training epochs, 3 of search at the authors' meta-graph rate, re-training from
# scratch): PRETRAIN_EPOCHS=5 SEARCH_EPOCHS=3 FINETUNE_EPOCHS=12 TRAIN_FLAGS="--limit-train 4000 --pretrain-lr 0.02
# --metagraph-lr 0.001 --search-momentum 0 --finetune-batch 32" and BASELINES without --instanas-from-search, with
# --retrain-snapshots 2 and 12 epochs; the first one-run table (one-run-19e6fad/): FINETUNE_EPOCHS=12 and
# --finetune-batch 32.
DATASET = cluttered-mnist
RUN ?= runs/cluttered-32
OUT ?= docs/results/compare-cluttered
LUT ?= $(RUN)/lut-res32.json
PRETRAIN_EPOCHS ?= 10
SEARCH_EPOCHS ?= 6
# 15 epochs at batch 64 (the default) cost less than 12 at 32 and MobileNetV2 1.0x was still climbing at 12
FINETUNE_EPOCHS ?= 15
TRAIN_FLAGS ?= --limit-train 4000 --pretrain-lr 0.02 --metagraph-lr 0.01 --search-momentum 0.9 --upper-end 0.58
# the last search snapshot (epoch SEARCH_EPOCHS - 1)
BASELINES ?= --blockdrop-curriculum-epochs 5 --blockdrop-joint-epochs 15 --aig-epochs 15 --oneshot-samples 100 \
	--retrain-snapshots $(shell expr $(SEARCH_EPOCHS) - 1) --instanas-from-search --oneshot-retrain-points 1
include docs/results/compare-digits/run.mk

FALLING := $(RUN)-falling
.PHONY: ablation
ablation: $(FALLING)/.done/instanas $(DONE)/instanas
	instanas ablation --run $(RUN) --run $(FALLING) --baseline $(RUN)/mobilenetv2.pt --lut $(LUT) \
		--out $(OUT)/ablation-reward
$(FALLING)/.done/instanas: $(DONE)/pretrain $(DONE)/mobilenetv2
	mkdir -p $(FALLING)/.done
	cp $(addprefix $(RUN)/,run.json pretrain.pt metrics-pretrain.csv mobilenetv2.pt metrics-mobilenetv2.csv) $(FALLING)/
	touch $(FALLING)/.done/pretrain $(FALLING)/.done/mobilenetv2
	$(MAKE) -f $(firstword $(MAKEFILE_LIST)) RUN=$(FALLING) LUT=$(LUT) TRAIN_FLAGS="$(TRAIN_FLAGS) --reward falling" \
		$(FALLING)/.done/instanas
