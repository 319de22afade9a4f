#!/usr/bin/env bash
# The GPU validation and benchmarks in one command, for a machine with a CUDA GPU (CuPy, torch and triton already
# installed; nothing here needs the network). Everything goes to one file: $OUT/gpu_results.txt if OUT is set, else
# ./gpu_results.txt.
#
#   bash benchmarks/gpu_check.sh            # tests, both benchmarks, one epoch of real training
#   bash benchmarks/gpu_check.sh tests      # or one stage: tests | step | kernels | train (each fits 10 minutes)
#
# Extra arguments for the benchmarks: GPU_STEP_ARGS (e.g. "--no-compile --steps 30"), GPU_KERNELS_ARGS.
# The training stage needs MNIST's cache file (mnist.npz; the GPU machine cannot download it): it is looked for in
# build/fastgan_cache/ (copy ~/.cache/fastgan/mnist.npz there and bring the folder along), else $FASTGAN_CACHE or
# ~/.cache/fastgan; without it the stage is skipped. Its run folder (samples, metrics) goes next to the results.
#
# Without a GPU it says so and exits 0. If pytest is missing on the GPU machine, install it into build/gpu_deps on
# a machine with the network (pip install --target build/gpu_deps pytest) and bring that folder along: it is put
# on PYTHONPATH here. Exit status: non-zero if a test failed or a benchmark's validation failed.
set -uo pipefail
cd "$(dirname "$0")/.."
STAGES="${1:-all}"
PY="${PYTHON:-$(command -v python || command -v python3)}"
RESULTS="${OUT:+$OUT/gpu_results.txt}"
RESULTS="${RESULTS:-gpu_results.txt}"
[ -d build/gpu_deps ] && export PYTHONPATH="$PWD/build/gpu_deps${PYTHONPATH:+:$PYTHONPATH}"
[ -f build/fastgan_cache/mnist.npz ] && export FASTGAN_CACHE="$PWD/build/fastgan_cache"
MNIST_CACHE="${FASTGAN_CACHE:-$HOME/.cache/fastgan}/mnist.npz"
RUN_DIR="$(dirname "$RESULTS")/gpu_train_run"
export PYTHONDONTWRITEBYTECODE=1
status=0

run() {  # run a stage, record its exit status, never stop the script
    echo; echo "=== $* ==="
    "$@"
    local rc=$?
    echo "--- exit status $rc"
    [ $rc -eq 0 ] || status=1
}

{
    echo "fastgan GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), stages: $STAGES"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "(no nvidia-smi)"
    "$PY" - <<'PY'
import importlib, platform
print("python", platform.python_version())
for name in ("numpy", "cupy", "torch", "triton", "pytest"):
    try:
        print(f"{name:8s}", getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as err:  # noqa: BLE001
        print(f"{name:8s} MISSING ({type(err).__name__}: {err})")
PY
    if ! "$PY" -c "from fastgan import backend; assert backend.cuda_available()" 2>/dev/null; then
        echo "SKIP: no CUDA GPU visible to CuPy here; nothing to check."
        exit 0
    fi
    "$PY" - <<'PY'
from fastgan import dispatch
print("fastgan kernels on cuda:", dispatch.describe("cuda"))
PY
    case "$STAGES" in all|tests)
        run "$PY" -m pytest -q -rs -p no:cacheprovider tests/test_gpu.py tests/test_cuda_kernels.py \
            tests/test_cuda_compile.py tests/test_triton_kernels.py ;;
    esac
    # shellcheck disable=SC2086  # (word splitting of the extra arguments is intended)
    case "$STAGES" in all|step) run "$PY" benchmarks/gpu_step.py ${GPU_STEP_ARGS:-} ;; esac
    case "$STAGES" in all|kernels) run "$PY" benchmarks/gpu_kernels.py ${GPU_KERNELS_ARGS:-} ;; esac
    case "$STAGES" in all|train)
        if [ -f "$MNIST_CACHE" ]; then
            rm -rf "$RUN_DIR"
            run "$PY" -m fastgan.train mnist --device cuda --epochs 1 --no-progress --log-every 100 --out "$RUN_DIR"
        else
            echo; echo "=== SKIP training: no MNIST cache at $MNIST_CACHE (see the top of this script) ==="
        fi ;;
    esac
    echo; echo "overall: $([ $status -eq 0 ] && echo OK || echo FAILURES, see above)"
    exit $status
} 2>&1 | tee "$RESULTS"
exit "${PIPESTATUS[0]}"
