"""The GPU machine's software and what fastgan makes of it; every stage of gpu_check.sh prints this first.

    python3 benchmarks/gpu_env.py              # versions, then fastgan's probes; exit 1 unless all is usable
    python3 benchmarks/gpu_env.py --versions   # the versions only (exit 0)

The probes fail (exit 1, with the reason) when
    * no GPU is visible: nvidia-smi lists none and CuPy counts none (a GPU check without a GPU checks nothing);
    * a GPU is visible but fastgan cannot use it: backend.cuda_status() compiles and runs a tiny kernel with CuPy;
    * a GPU kernel implementation (cuda, triton) does not load here (dispatch says why: e.g. Triton 3.6 without a
      CUDA build of torch has no GPU driver), or its first launch (LeakyReLU on 1000 values) raises or disagrees
      with the NumPy reference.
"""
import argparse
import importlib
import os
import platform
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fastgan  # noqa: E402,F401  (before NumPy, as fastgan asks)
import numpy as np  # noqa: E402


def _first_line(err):
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0][:200]}"


def _module_version(name, extra=None):
    try:
        module = importlib.import_module(name)
    except Exception as err:  # noqa: BLE001 - a broken install is reported, not raised
        return f"MISSING ({_first_line(err)})"
    version = getattr(module, "__version__", "?")
    try:
        return f"{version}{extra(module) if extra else ''}"
    except Exception as err:  # noqa: BLE001
        return f"{version} ({_first_line(err)})"


def _cupy_extra(cupy):
    runtime = cupy.cuda.runtime
    return f" (built for CUDA {runtime.runtimeGetVersion()}, driver API {runtime.driverGetVersion()})"


def _torch_extra(torch):
    return f" (CUDA {torch.version.cuda}, torch.cuda.is_available() = {torch.cuda.is_available()})"


def nvidia_smi():
    """(GPU lines of `nvidia-smi -L`, name/driver/memory line) or ([], why not)."""
    if shutil.which("nvidia-smi") is None:
        return [], "no nvidia-smi on PATH"
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60)
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        return [], f"nvidia-smi failed ({_first_line(err)})"
    gpus = [line for line in listed.stdout.splitlines() if line.startswith("GPU ")]
    detail = query.stdout.strip() or (listed.stderr or query.stderr).strip()[:200] or f"exit status {listed.returncode}"
    return gpus, detail


def print_versions():
    print(f"python     {platform.python_version()} ({sys.executable})")
    print(f"numpy      {np.__version__}")
    print(f"cupy       {_module_version('cupy', _cupy_extra)}")
    print(f"torch      {_module_version('torch', _torch_extra)}")
    print(f"triton     {_module_version('triton')}")
    print(f"pytest     {_module_version('pytest')}")
    gpus, detail = nvidia_smi()
    print(f"GPU        {detail} (nvidia-smi lists {len(gpus)} GPU(s))")
    try:
        import cupy
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
        print(f"CuPy's GPU 0: {name.decode() if isinstance(name, bytes) else name}")
    except Exception:  # noqa: BLE001 - no CuPy or no device: said above and by the probes below
        pass
    return len(gpus)


def first_launch(name):
    """None if implementation `name` computes LeakyReLU on 1000 values as the reference does, else what went wrong."""
    from fastgan import dispatch
    from fastgan.kernels import reference
    import cupy
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    try:
        y = cupy.asnumpy(dispatch.implementation(name).leaky_relu_forward(cupy.asarray(x), 0.2))
    except Exception as err:  # noqa: BLE001 - the reason is the result
        return f"its first launch raised {_first_line(err)}"
    if not np.allclose(y, reference.leaky_relu_forward(x, 0.2), rtol=1e-6, atol=0):
        return "its first launch computed wrong values"
    return None


def probe(listed_gpus):
    """The list of problems (empty: the GPU is usable and every GPU implementation works)."""
    from fastgan import backend, dispatch
    status = backend.cuda_status()
    print(f"fastgan's GPU probe: {status.detail}")
    if not status.usable:
        if listed_gpus or status.devices:
            return [f"a GPU is visible but fastgan cannot use it: {status.detail}"]
        return [f"no GPU is visible (nvidia-smi lists none; {status.detail}): a GPU check has nothing to check"]
    problems = []
    for name in dispatch.PREFERENCE["cuda"]:
        why = dispatch.why_unavailable(name) or first_launch(name)
        print(f"fastgan {name:7s}: {'OK (compiled and ran a first kernel)' if why is None else why}")
        if why is not None:
            problems.append(f"fastgan's {name!r} GPU kernels: {why}")
    if not problems:
        print("fastgan's kernels on cuda: " + ", ".join(f"{op}={impl}" for op, impl in
                                                       sorted(dispatch.describe("cuda").items())))
    return problems


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--versions", action="store_true", help="print the versions only")
    args = p.parse_args()
    listed = print_versions()
    if args.versions:
        return 0
    problems = probe(listed)
    for problem in problems:
        print(f"FAIL gpu_env: {problem}", file=sys.stderr)
    if not problems:
        print("gpu_env: the GPU is usable and every fastgan GPU implementation ran a first kernel")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
