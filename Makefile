# The two commands of the README:
#   make demo   set everything up (idempotent) and run the main job on the embedded model
#   make test   run the test suite (what CI runs)
# For the edit loop: make test-fast (the suite without the tests marked slow: ROS processes,
# training, ONNX export, benchmarks).
VENV := .venv
PY := $(VENV)/bin/python
FRAMES ?= 30
DEMO_ARGS ?=

.PHONY: setup demo test test-fast lint bench model clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/dsflash demo --frames $(FRAMES) $(DEMO_ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(VENV)/bin/dsflash bench $(BENCH_ARGS)

# Retrain the embedded default model from scratch (synthetic data, ~9 h on 2 CPU cores, in
# five phases: tiny_synth.yaml, then tiny_synth_continue.yaml three times, each continuing
# the previous phase's segmenter and warm-starting its relation head, then tiny_vga_continue.yaml
# on camera-size (480x640) data with repeat-factor sampling and its relation head at 4x4
# pooling, and tiny_vga_proposals.yaml for the pair-proposal scorer), then score it on
# held-out splits generated with seeds never used for training or tuning (the numbers in
# models/MODEL_CARD.md).
MODEL := models/dsflash_tiny_synth.safetensors
HELDOUT_SEED := 20261202
HELDOUT_VGA_SEED := 20261210
TRAIN := $(VENV)/bin/dsflash train
CONTINUE := --data data/synth_tiny --recipe config/train/tiny_synth_continue.yaml
VGA := --data data/synth_vga --recipe config/train/tiny_vga_continue.yaml
# $(call continue_phase,PREVIOUS RUN,PREVIOUS FULL MODEL,RUN,OUTPUT MODEL)
define continue_phase
	$(TRAIN) segmenter $(CONTINUE) --init $(1)/segmenter/model.safetensors --out $(3) $(TRAIN_ARGS)
	$(TRAIN) relations $(CONTINUE) --backbone $(3)/segmenter/model.safetensors --init $(2) \
	  --out $(3) --output $(4) $(TRAIN_ARGS)
endef
PHASE4 := runs/tiny_synth_d/dsflash_tiny_synth.safetensors
model: setup
	$(TRAIN) all --data data/synth_tiny --generate \
	  --recipe config/train/tiny_synth.yaml --out runs/tiny_synth $(TRAIN_ARGS)
	$(call continue_phase,runs/tiny_synth,runs/tiny_synth/model.safetensors,\
	  runs/tiny_synth_b,runs/tiny_synth_b/dsflash_tiny_synth.safetensors)
	$(call continue_phase,runs/tiny_synth_b,runs/tiny_synth_b/dsflash_tiny_synth.safetensors,\
	  runs/tiny_synth_c,runs/tiny_synth_c/dsflash_tiny_synth.safetensors)
	$(call continue_phase,runs/tiny_synth_c,runs/tiny_synth_c/dsflash_tiny_synth.safetensors,\
	  runs/tiny_synth_d,$(PHASE4))
	$(TRAIN) segmenter $(VGA) --generate --init $(PHASE4) --out runs/tiny_vga_e --threads 1 $(TRAIN_ARGS)
	$(TRAIN) relations $(VGA) --backbone runs/tiny_vga_e/segmenter/model.safetensors \
	  --init $(PHASE4) --out runs/tiny_vga_e --output runs/tiny_vga_e/with_head.safetensors \
	  --threads 1 $(TRAIN_ARGS)
	$(TRAIN) proposals --data data/synth_vga --recipe config/train/tiny_vga_proposals.yaml \
	  --model runs/tiny_vga_e/with_head.safetensors --out runs/tiny_vga_e/proposals \
	  --output $(MODEL) --threads 1 $(TRAIN_ARGS)
	test -f data/heldout/psg.json || \
	  $(VENV)/bin/dsflash synth --out data/heldout --num 1500 --seed $(HELDOUT_SEED)
	$(VENV)/bin/dsflash eval data/heldout --split test --model $(MODEL) --out runs/tiny_vga_e/eval
	test -f data/heldout_vga/psg.json || $(VENV)/bin/dsflash synth --out data/heldout_vga \
	  --num 1000 --seed $(HELDOUT_VGA_SEED) --height 480 --width 640
	$(VENV)/bin/dsflash eval data/heldout_vga --split test --modes sgdet,predcls --model $(MODEL) \
	  --out runs/tiny_vga_e/eval_vga

clean:
	rm -rf build install log .pytest_cache
