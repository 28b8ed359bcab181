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

# Retrain the embedded default model from scratch (synthetic data, ~7 h on 2 CPU cores, in
# four phases: tiny_synth.yaml, then tiny_synth_continue.yaml three times, each continuing
# the previous phase's segmenter and warm-starting its relation head), then score it on a
# held-out split generated with a seed never used for training or tuning (the numbers in
# models/MODEL_CARD.md).
MODEL := models/dsflash_tiny_synth.safetensors
HELDOUT_SEED := 20261202
TRAIN := $(VENV)/bin/dsflash train
CONTINUE := --data data/synth_tiny --recipe config/train/tiny_synth_continue.yaml
# $(call continue_phase,PREVIOUS RUN,PREVIOUS FULL MODEL,RUN,OUTPUT MODEL)
define continue_phase
	$(TRAIN) segmenter $(CONTINUE) --init $(1)/segmenter/model.safetensors --out $(3) $(TRAIN_ARGS)
	$(TRAIN) relations $(CONTINUE) --backbone $(3)/segmenter/model.safetensors --init $(2) \
	  --out $(3) --output $(4) $(TRAIN_ARGS)
endef
model: setup
	$(TRAIN) all --data data/synth_tiny --generate \
	  --recipe config/train/tiny_synth.yaml --out runs/tiny_synth $(TRAIN_ARGS)
	$(call continue_phase,runs/tiny_synth,runs/tiny_synth/model.safetensors,\
	  runs/tiny_synth_b,runs/tiny_synth_b/dsflash_tiny_synth.safetensors)
	$(call continue_phase,runs/tiny_synth_b,runs/tiny_synth_b/dsflash_tiny_synth.safetensors,\
	  runs/tiny_synth_c,runs/tiny_synth_c/dsflash_tiny_synth.safetensors)
	$(call continue_phase,runs/tiny_synth_c,runs/tiny_synth_c/dsflash_tiny_synth.safetensors,\
	  runs/tiny_synth_d,$(MODEL))
	test -f data/heldout/psg.json || \
	  $(VENV)/bin/dsflash synth --out data/heldout --num 1500 --seed $(HELDOUT_SEED)
	$(VENV)/bin/dsflash eval data/heldout --split test --model $(MODEL) --out runs/tiny_synth_d/eval

clean:
	rm -rf build install log .pytest_cache
