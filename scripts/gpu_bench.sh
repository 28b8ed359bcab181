#!/usr/bin/env bash
# One prepared GPU benchmark: DSFlash-B (random weights), 640x640, batch 1.
#   per-stage latency + end-to-end FPS + relations/s sweep (64..4096 pairs per forward),
#   torch fp32/fp16/bf16 (autocast) and onnxruntime CUDA fp32/fp16 when its CUDA provider is
#   installed, the per-pair Alg. 1 baseline at N = 20 and the head-level comparisons.
# Prints the table, then the JSON (also written to $OUT_DIR/gpu_bench.json).
# Usage (repository root or anywhere):  bash scripts/gpu_bench.sh
#   PYTHON=/path/to/python  (default: .venv/bin/python, else python3; needs torch with CUDA,
#   numpy, pyyaml, safetensors; onnx + onnxruntime-gpu for the onnxruntime rows)
#   OUT_DIR=dir (default: $OUT if set, else the current directory); BENCH_TIMEOUT=seconds (420)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
OUT_DIR=${OUT_DIR:-${OUT:-.}}
mkdir -p "$OUT_DIR"
export DSFLASH_CACHE_DIR=${DSFLASH_CACHE_DIR:-$OUT_DIR/dsflash-cache}

"$PY" - <<'PYEOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_bench.sh: torch.cuda.is_available() is False; this script needs a CUDA GPU")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name()}")
PYEOF

BACKENDS=torch
if "$PY" -c "import sys, onnxruntime as o; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" 2>/dev/null; then
  BACKENDS=torch,onnxruntime
else
  echo "onnxruntime CUDA provider not available: torch rows only"
fi

timeout "${BENCH_TIMEOUT:-420}" "$PY" -m dsflash_ros.cli bench \
  --presets B --device cuda --backends "$BACKENDS" --precisions fp32,fp16,bf16 \
  --ns 5,10,20,40 --batch-sizes 64,256,1024,4096 --repeats 10 --warmup 3 \
  --baseline-n 20 --json "$OUT_DIR/gpu_bench.json"
cat "$OUT_DIR/gpu_bench.json"
