#!/usr/bin/env bash
# The GPU check in stages, each a short command on a GPU machine; docs/gpu.md is the runbook (which stages to run in
# which order, how long each takes, what to bring along).
#
#   bash benchmarks/gpu_check.sh STAGE [STAGE ...]
#
#   install       python3 -m pip install --no-deps --no-build-isolation -e .  (offline; builds the C++ extension)
#   env           the versions, then fastgan's probes: a usable GPU, every GPU implementation loads and launches
#   tests         the gpu-marked tests: tests/test_gpu.py and the device cases of tests/test_cuda_kernels.py
#   tests-cuda    the same without the triton cases      tests-triton   the triton cases only
#   step          benchmarks/gpu_step.py     the whole training step against torch      (GPU_STEP_ARGS)
#   step-bf16     the same with --precision bf16: fastgan.autocast against torch.autocast  (GPU_STEP_ARGS)
#   kernels       benchmarks/gpu_kernels.py  kernel by kernel against torch             (GPU_KERNELS_ARGS)
#   train         benchmarks/gpu_train.py    one epoch of fastgan.train on cuda, synthetic data  (GPU_TRAIN_ARGS)
#   cpu-bf16      the host CPU's bfloat16 paths (AMX, AVX-512-BF16) against the bf16 reference (tests/test_bfloat16.py)
#   cpu-bf16-kernels, cpu-bf16-step   benchmarks/kernels.py and train_step.py --precision bf16 on that CPU, on the
#                 path FASTGAN_BF16=$CPU_BF16_PATH (default auto; amx: the AMX GEMM), beside torch's autocast, the
#                 step followed by a profile of fastgan's (--profile 3)  (CPU_BF16_ARGS)
#   cpu-conv      the host CPU's float32 convolutions at the 64×64 model's shapes, direct (AVX-512) beside im2col and
#                 torch, 2 threads  (CPU_CONV_ARGS)
#
# Each stage writes its own file, $OUT/gpu_<stage>.txt (build/gpu_results/ without OUT): the versions first, then
# all the stage printed (stdout and stderr), then "RESULT <stage>: PASS" or "RESULT <stage>: FAIL (why)". Nothing
# is skipped: without a usable GPU every stage but install fails and says why, and a test that skips fails. The
# stages of one command share GPU_CHECK_BUDGET seconds (default 560, inside a 10-minute limit per command): a stage
# still running when they are spent is interrupted (pytest still reports what ran) and fails; a stage with less
# than 30 s left does not start, and fails. The CPU-only tests (the CUDA emulator, nvcc, Triton's interpreter) are
# CI's and do not run here. Python is $PYTHON, else python3, else python. Exit status: 0 only if every stage passed.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then
    echo "usage: bash benchmarks/gpu_check.sh STAGE [STAGE ...]  (stages: see the top of this file)" >&2
    exit 2
fi
PY="${PYTHON:-$(command -v python3 || command -v python)}"
RESULTS="${OUT:-build/gpu_results}"
BUDGET="${GPU_CHECK_BUDGET:-560}"
mkdir -p "$RESULTS"
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"   # gpu_pytest_plugin
summary=()
status=0

stage_command() {  # the command line of a stage, one word per line
    local tests=(-m pytest -q -rfE --tb=short --durations=10 -p no:cacheprovider -p gpu_pytest_plugin -m gpu)
    local files=(tests/test_gpu.py tests/test_cuda_kernels.py)
    case "$1" in
        install)      printf '%s\n' "$PY" -m pip install --no-deps --no-build-isolation -e . ;;
        env)          printf '%s\n' "$PY" benchmarks/gpu_env.py ;;
        tests)        printf '%s\n' "$PY" "${tests[@]}" "${files[@]}" ;;
        tests-cuda)   printf '%s\n' "$PY" "${tests[@]}" -k "not triton" "${files[@]}" ;;
        tests-triton) printf '%s\n' "$PY" "${tests[@]}" -k "triton" "${files[@]}" ;;
        # shellcheck disable=SC2086  # (word splitting of the extra arguments is intended)
        step)         printf '%s\n' "$PY" benchmarks/gpu_step.py ${GPU_STEP_ARGS:-} ;;
        # shellcheck disable=SC2086
        step-bf16)    printf '%s\n' "$PY" benchmarks/gpu_step.py --precision bf16 ${GPU_STEP_ARGS:-} ;;
        # shellcheck disable=SC2086
        kernels)      printf '%s\n' "$PY" benchmarks/gpu_kernels.py ${GPU_KERNELS_ARGS:-} ;;
        # shellcheck disable=SC2086
        train)        printf '%s\n' "$PY" benchmarks/gpu_train.py --results "$RESULTS/gpu_train" ${GPU_TRAIN_ARGS:-} ;;
        # the host CPU's bfloat16 paths (AMX, AVX-512-BF16: csrc/cpu/gemm_bf16.cpp, register_tile.h), which CI's CPUs
        # may lack; here too a skip fails, with its reason ("this CPU has no AMX")
        cpu-bf16)     printf '%s\n' "$PY" -m pytest -q -rfE --tb=short \
                          -p no:cacheprovider -p gpu_pytest_plugin tests/test_bfloat16.py -k "amx or avx512" ;;
        # shellcheck disable=SC2086
        cpu-bf16-kernels) printf '%s\n' env "FASTGAN_BF16=${CPU_BF16_PATH:-auto}" "$PY" benchmarks/kernels.py \
                          --precision bf16 ${CPU_BF16_ARGS:---threads 16 --batch-size 128 --repeats 9} ;;
        # shellcheck disable=SC2086
        cpu-bf16-step) printf '%s\n' env "FASTGAN_BF16=${CPU_BF16_PATH:-auto}" "$PY" benchmarks/train_step.py \
                          --precision bf16 --with-fp32 --profile 3 \
                          ${CPU_BF16_ARGS:---threads 16 --batch-size 128 --steps 8} ;;
        # shellcheck disable=SC2086
        cpu-conv)     printf '%s\n' "$PY" benchmarks/kernels.py --conv-choices direct,im2col --kernel conv2d_forward \
                          --kernel conv2d_backward --kernel conv_transpose2d_forward --kernel conv_transpose2d_backward \
                          ${CPU_CONV_ARGS:---model dcgan64 --threads 2 --repeats 9} ;;
        *)            return 1 ;;
    esac
}

run_stage() {  # run stage $1 into $RESULTS/gpu_$1.txt; its exit status is the stage's
    local name=$1 command
    mapfile -t command < <(stage_command "$name")
    {
        echo "fastgan GPU check, stage $name, $(date -u '+%Y-%m-%d %H:%M:%S UTC'), commit" \
             "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
        [ "$name" = env ] || "$PY" benchmarks/gpu_env.py --versions   # (env prints them itself)
        local left=$((BUDGET - SECONDS)) started=$SECONDS rc
        echo "--- ${command[*]}"
        if [ "$left" -lt 30 ]; then
            echo "RESULT $name: FAIL (not started: ${left} s left of the command's ${BUDGET} s)"
            exit 125
        fi
        timeout --signal=INT --kill-after=20 "$left" "${command[@]}"
        rc=$?
        if [ "$name" = install ] && [ $rc -eq 0 ]; then   # installed: did the C++ CPU kernels build?
            "$PY" -c "from fastgan import dispatch; why = dispatch.why_unavailable('cpu'); \
print('fastgan C++ CPU kernels: ' + ('built' if why is None else 'NOT built: ' + why)); raise SystemExit(why is not None)"
            rc=$?
        fi
        if [ $rc -eq 0 ]; then
            echo "RESULT $name: PASS ($((SECONDS - started)) s)"
        elif [ $rc -eq 124 ]; then
            echo "RESULT $name: FAIL (interrupted after $((SECONDS - started)) s: the command's ${BUDGET} s are spent)"
        else
            echo "RESULT $name: FAIL (exit status $rc after $((SECONDS - started)) s)"
        fi
        exit $rc
    } 2>&1 | tee "$RESULTS/gpu_$name.txt"
    return "${PIPESTATUS[0]}"
}

for name in "$@"; do
    if ! stage_command "$name" > /dev/null; then
        echo "unknown stage '$name': install, env, tests, tests-cuda, tests-triton, step, step-bf16, kernels, train," \
             "cpu-bf16, cpu-bf16-kernels, cpu-bf16-step or cpu-conv" >&2
        exit 2
    fi
done
for name in "$@"; do
    echo; echo "=== stage $name -> $RESULTS/gpu_$name.txt"
    if run_stage "$name"; then summary+=("$name: PASS"); else summary+=("$name: FAIL"); status=1; fi
done
echo; echo "gpu_check: ${summary[*]}"
exit $status
