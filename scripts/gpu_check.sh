#!/usr/bin/env bash
# Every check that needs a GPU, in one short run (under 8 minutes on an H100/H200), for the
# `device` tool:  run(command="bash scripts/gpu_check.sh", timeout_s=540)
# Results go to $OUT/gpu_check.txt (and gpu_bench.json); elsewhere to ./gpu_check_out/.
# Uses the machine's own python3 (torch, torchvision, onnx, onnxruntime, cuda-bindings,
# NVRTC and llvmlite are on the lent image) with this checkout installed without deps.
set -u
OUT=${OUT:-gpu_check_out}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.txt"
export PYTHONUNBUFFERED=1
{
  echo "== $(date -u)  $(git rev-parse --short HEAD 2>/dev/null)"
  nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv
  python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . 2>&1 | tail -2
  python3 -c "import compiler, cuda.bindings, sys; print('python', sys.version.split()[0], 'compiler', compiler.__version__)"
  echo "== cuda tests (the zoo against the reference and onnxruntime, torch tensors, threads, overhead)"
  timeout 240 python3 -m pytest -q -m cuda -p no:cacheprovider tests/test_cuda_gpu.py -s 2>&1 | tail -40
  echo "== benchmark against torch eager and torch.compile(max-autotune); fp16 GEMM 4096^3"
  timeout 240 python3 -m benchmarks.gpu_bench --models resnet50,squeezenet1_0 --batch 1,8 --runs 20 \
      --inductor-budget 60 --out "$OUT/gpu_bench.json" 2>&1 | grep -v Warning | tail -30
} 2>&1 | tee "$LOG"
