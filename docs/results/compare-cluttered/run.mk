# Issue 33: the whole cluttered pipeline in one command, resumable, at a budget of about two hours on 2 cores:
# this machine's LUT (profile, then calibrate on 300 children), MobileNetV2 0.4/1.0/1.4x, InstaNAS (pre-training 5
# epochs at SGD 0.02, search 3, the last snapshot re-trained 12), one-shot (100 children scored, 2 frontier points
# re-trained), BlockDrop (curriculum 5, joint 12) and ConvNet-AIG (12), every re-training 12 epochs, on 4,000 of
# cluttered MNIST's 8,000 training images (3,600 after the 10 % held out), validated on all 2,000. Run from the
# repository root with `instanas` on PATH:
#
#     make -j2 -f docs/results/compare-cluttered/run.mk
#
# Every stage's wall time goes to $(RUN)/wall-times.txt; the last step, the comparison with every method, runs alone
# and copies the table, buckets, frontier and metrics into $(OUT). The recipe is docs/results/compare-digits/run.mk's.
DATASET = cluttered-mnist
RUN ?= runs/cluttered-32
OUT ?= docs/results/compare-cluttered
LUT ?= $(RUN)/lut-res32.json
PRETRAIN_EPOCHS ?= 5
SEARCH_EPOCHS ?= 3
FINETUNE_EPOCHS ?= 12
TRAIN_FLAGS ?= --limit-train 4000 --pretrain-lr 0.02
BASELINES ?= --blockdrop-curriculum-epochs 5 --blockdrop-joint-epochs 12 --aig-epochs 12 --oneshot-samples 100 \
	--retrain-snapshots 2 --oneshot-retrain-points 2
include docs/results/compare-digits/run.mk
