# The two commands of the README:
#   make demo   set everything up (idempotent) and run the main job on the embedded model
#   make test   run the test suite
VENV := .venv
PY := $(VENV)/bin/python
FRAMES ?= 30
DEMO_ARGS ?=

.PHONY: setup demo test lint bench model clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/dsflash demo --frames $(FRAMES) $(DEMO_ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(VENV)/bin/dsflash bench $(BENCH_ARGS)

# Retrain the embedded default model from scratch (synthetic data, ~4 h on 2 CPU cores, in
# two phases: tiny_synth.yaml, then tiny_synth_continue.yaml continuing its segmenter and
# warm-starting its relation head), then score it on a held-out split generated with a seed
# never used for training or tuning (the numbers in models/MODEL_CARD.md).
MODEL := models/dsflash_tiny_synth.safetensors
HELDOUT_SEED := 20261202
TRAIN := $(VENV)/bin/dsflash train
model: setup
	$(TRAIN) all --data data/synth_tiny --generate \
	  --recipe config/train/tiny_synth.yaml --out runs/tiny_synth $(TRAIN_ARGS)
	$(TRAIN) segmenter --data data/synth_tiny --recipe config/train/tiny_synth_continue.yaml \
	  --init runs/tiny_synth/segmenter/model.safetensors --out runs/tiny_synth_b $(TRAIN_ARGS)
	$(TRAIN) relations --data data/synth_tiny --recipe config/train/tiny_synth_continue.yaml \
	  --backbone runs/tiny_synth_b/segmenter/model.safetensors \
	  --init runs/tiny_synth/model.safetensors --out runs/tiny_synth_b \
	  --output runs/tiny_synth_b/dsflash_tiny_synth.safetensors $(TRAIN_ARGS)
	$(TRAIN) segmenter --data data/synth_tiny --recipe config/train/tiny_synth_continue.yaml \
	  --init runs/tiny_synth_b/segmenter/model.safetensors --out runs/tiny_synth_c $(TRAIN_ARGS)
	$(TRAIN) relations --data data/synth_tiny --recipe config/train/tiny_synth_continue.yaml \
	  --backbone runs/tiny_synth_c/segmenter/model.safetensors \
	  --init runs/tiny_synth_b/dsflash_tiny_synth.safetensors --out runs/tiny_synth_c \
	  --output $(MODEL) $(TRAIN_ARGS)
	test -f data/heldout/psg.json || \
	  $(VENV)/bin/dsflash synth --out data/heldout --num 1500 --seed $(HELDOUT_SEED)
	$(VENV)/bin/dsflash eval data/heldout --split test --model $(MODEL) --out runs/tiny_synth_c/eval

clean:
	rm -rf build install log .pytest_cache
