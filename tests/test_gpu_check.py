"""The GPU check cannot pass by skipping: with the GPU's probes faked on this CPU machine (a fake CuPy that sees a
device but cannot compile, a fake nvidia-smi, a fake `python` on PATH, torch without CUDA), fastgan's probe, the
benchmarks and benchmarks/gpu_check.sh each fail loudly and say why. (The Triton driver and stream checks are in
test_triton_kernels.py, beside the Triton kernels.)"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastgan import backend, dispatch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
COMPILE_ERROR = "nvrtc: error: invalid value for --gpu-architecture (-arch)"

# a CuPy that counts one device but whose compiler fails, as on a machine whose CuPy does not match its CUDA
BROKEN_CUPY = f'''
import types
__version__ = "14.2.0-fake"

class RawModule:
    def __init__(self, code, options=(), name_expressions=()):
        pass

    def get_function(self, name):
        raise RuntimeError({COMPILE_ERROR!r})

def _properties(device):
    return {{"name": b"Fake H200"}}

cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(
    getDeviceCount=lambda: 1, runtimeGetVersion=lambda: 13000, driverGetVersion=lambda: 13000,
    getDeviceProperties=_properties))
'''

# torch without CUDA, and quick to import
CPU_TORCH = '''
import types
__version__ = "2.11.0-fake"
version = types.SimpleNamespace(cuda=None, hip=None)
cuda = types.SimpleNamespace(is_available=lambda: False)
'''

NVIDIA_SMI = '''#!/bin/sh
case "$1" in
    -L) echo "GPU 0: NVIDIA H200 (UUID: GPU-00000000-fake)" ;;
    *)  echo "NVIDIA H200, 580.00, 143771 MiB" ;;
esac
'''


def write(path, text, executable=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text).lstrip())
    if executable:
        os.chmod(path, 0o755)
    return path


@pytest.fixture
def fake_machine(tmp_path):
    """run(args, gpu=..., cupy=..., torch=...) runs a command in an environment of fakes: `nvidia-smi` listing an
    H200 (gpu=True), the broken CuPy (cupy=True), the CUDA-less torch (torch="fake"), and on PATH a `python` that
    must not be used and a `python3` that is this interpreter. Returns the CompletedProcess."""
    bin_dir = tmp_path / "bin"
    write(str(bin_dir / "python"), "#!/bin/sh\necho 'the wrong python ran' >&2\nexit 97\n", executable=True)
    write(str(bin_dir / "python3"), f'#!/bin/sh\nexec "{sys.executable}" "$@"\n', executable=True)
    write(str(tmp_path / "gpu" / "nvidia-smi"), NVIDIA_SMI, executable=True)
    write(str(tmp_path / "cupy" / "cupy" / "__init__.py"), BROKEN_CUPY)
    write(str(tmp_path / "torch" / "torch" / "__init__.py"), CPU_TORCH)

    def run(args, gpu=True, cupy=True, torch="fake", **env):
        path = [str(bin_dir)] + ([str(tmp_path / "gpu")] if gpu else []) + ["/usr/local/bin", "/usr/bin", "/bin"]
        pythonpath = ([str(tmp_path / "cupy")] if cupy else []) + ([str(tmp_path / "torch")] if torch else [])
        environment = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "TRITON_INTERPRET", "OUT")}
        environment.update({"PATH": os.pathsep.join(path), "PYTHONPATH": os.pathsep.join(pythonpath), **env})
        return subprocess.run(args, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    return run


# --- fastgan's probe ---------------------------------------------------------------------------------------------

class FakeCupy:
    """A CuPy whose device count and kernel behaviour a test chooses (NumPy arrays stand in for device arrays)."""

    def __init__(self, devices=1, compile_error=None, result=None):
        import types
        self.compiles = 0
        self.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: devices()
                                                                        if callable(devices) else devices))
        self.zeros, self.compile_error, self.result = np.zeros, compile_error, result

    def RawModule(self, code, options=(), name_expressions=()):  # noqa: N802 - CuPy's name
        fake = self

        class Module:
            def get_function(self, name):
                fake.compiles += 1
                if fake.compile_error:
                    raise RuntimeError(fake.compile_error)

                def kernel(grid, block, args):
                    args[0][...] = fake.result if fake.result is not None else 2 * np.arange(block[0]) + 1
                return kernel
        return Module()


@pytest.fixture
def with_cupy(monkeypatch):
    def install(fake):
        monkeypatch.setitem(sys.modules, "cupy", fake)
        return fake
    yield install


def test_a_gpu_whose_cupy_cannot_compile_is_not_used(with_cupy):
    with_cupy(FakeCupy(compile_error=COMPILE_ERROR))
    status = backend.cuda_status()
    assert not status.usable and status.devices == 1
    assert "sees 1 CUDA device(s) but cannot compile and run a kernel" in status.detail
    assert COMPILE_ERROR in status.detail
    assert not backend.cuda_available() and backend.normalize_device("auto") == "cpu"


def test_a_gpu_that_computes_wrong_values_is_not_used(with_cupy):
    with_cupy(FakeCupy(result=np.zeros(32, np.float32)))
    status = backend.cuda_status()
    assert not status.usable and "computed wrong values" in status.detail


def test_no_device_and_a_driver_error_mean_no_gpu(with_cupy):
    with_cupy(FakeCupy(devices=0))
    assert backend.cuda_status() == backend.CudaStatus(False, 0, "CuPy finds no CUDA device")

    def no_driver():
        raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")
    with_cupy(FakeCupy(devices=no_driver))
    status = backend.cuda_status()
    assert not status.usable and status.devices == 0 and "cudaErrorInsufficientDriver" in status.detail


def test_a_cupy_that_cannot_be_imported_is_reported(tmp_path, monkeypatch):
    write(str(tmp_path / "cupy" / "__init__.py"), 'raise ImportError("libnvrtc.so.13: cannot open shared object file")')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(backend, "_probed", None)   # "no CuPy" may be cached already: probe afresh
    status = backend.cuda_status()
    assert status == backend.CudaStatus(False, 0, "CuPy cannot be imported (ImportError: libnvrtc.so.13: cannot open "
                                                  "shared object file)")


def test_a_usable_gpu_is_probed_once_per_cupy_module(with_cupy):
    fake = with_cupy(FakeCupy())
    assert backend.cuda_available() and backend.cuda_available() and backend.normalize_device("auto") == "cuda"
    assert fake.compiles == 1, "the probe should compile and run its kernel once, then answer from its cache"
    other = with_cupy(FakeCupy(compile_error=COMPILE_ERROR))
    assert not backend.cuda_available() and other.compiles == 1, "another CuPy module is probed afresh"


# --- the benchmarks ----------------------------------------------------------------------------------------------

sys.path.insert(0, BENCHMARKS)


def test_benchmarks_fail_when_the_gpu_cannot_be_used(with_cupy, capsys):
    import gpu_common
    with_cupy(FakeCupy(compile_error=COMPILE_ERROR))
    with pytest.raises(SystemExit) as stopped:
        gpu_common.require_gpu_and_torch("gpu_step")
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert "FAIL gpu_step: no GPU that fastgan can use: CuPy sees 1 CUDA device(s)" in err and COMPILE_ERROR in err


def test_benchmarks_fail_when_torch_has_no_cuda(monkeypatch, capsys):
    import types

    import gpu_common
    torch = types.ModuleType("torch")
    exec(CPU_TORCH, torch.__dict__)
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setattr(backend, "cuda_status", lambda: backend.CudaStatus(True, 1, "faked"))
    with pytest.raises(SystemExit) as stopped:
        gpu_common.require_gpu_and_torch("gpu_kernels")
    assert stopped.value.code == 1
    assert "FAIL gpu_kernels: torch 2.11.0-fake has no CUDA" in capsys.readouterr().err


def test_a_gpu_implementation_that_does_not_load_is_a_failure(monkeypatch, capsys):
    import gpu_common
    why = {"cuda": None, "triton": "Triton 3.6.0 cannot launch on the GPU: RuntimeError: 0 active drivers ([])"}
    monkeypatch.setattr(dispatch, "why_unavailable", why.get)
    verdict = gpu_common.Verdict("gpu_step")
    assert gpu_common.gpu_implementations(verdict) == ["cuda"]
    with pytest.raises(SystemExit) as stopped:
        verdict.exit()
    assert stopped.value.code == 1
    assert "fastgan's 'triton' GPU kernels do not load: Triton 3.6.0 cannot launch" in capsys.readouterr().out


def test_a_kernel_that_raises_or_disagrees_is_a_failure_not_a_cell(capsys):
    import gpu_common
    from gpu_kernels import measure
    verdict = gpu_common.Verdict("gpu_kernels")

    def raising():
        raise TypeError("fastgan.kernels.triton supports float32 and float64, got float16")
    assert measure(verdict, "G1 fwd: fastgan triton", raising, lambda out: None, lambda run: 1.0) == "ERROR"
    assert measure(verdict, "G1 fwd: fastgan cuda", lambda: 0, lambda out: "max |difference| 3", None) == "MISMATCH"
    assert measure(verdict, "G2 fwd: fastgan cuda", lambda: 0, lambda out: None, lambda run: 12.5) == 12.5
    assert verdict.failures == ["G1 fwd: fastgan triton raised TypeError: fastgan.kernels.triton supports float32 "
                                "and float64, got float16",
                                "G1 fwd: fastgan cuda disagrees with torch: max |difference| 3"]
    with pytest.raises(SystemExit) as stopped:
        verdict.exit()
    assert stopped.value.code == 1 and "2 FAILURE(S)" in capsys.readouterr().out


# --- the stages of gpu_check.sh ----------------------------------------------------------------------------------

def test_env_fails_when_a_visible_gpu_cannot_compile(fake_machine):
    result = fake_machine(["python3", "benchmarks/gpu_env.py"])
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cupy       14.2.0-fake (built for CUDA 13000" in result.stdout
    assert "torch      2.11.0-fake (CUDA None, torch.cuda.is_available() = False)" in result.stdout
    assert "GPU        NVIDIA H200, 580.00, 143771 MiB (nvidia-smi lists 1 GPU(s))" in result.stdout
    assert "FAIL gpu_env: a GPU is visible but fastgan cannot use it: CuPy sees 1 CUDA device(s) but cannot " \
           "compile and run a kernel" in result.stderr
    assert COMPILE_ERROR in result.stderr


def test_env_fails_when_a_gpu_is_listed_but_cupy_is_missing(fake_machine):
    result = fake_machine(["python3", "benchmarks/gpu_env.py"], cupy=False)
    assert result.returncode == 1
    assert "FAIL gpu_env: a GPU is visible but fastgan cannot use it: CuPy is not installed" in result.stderr


def test_env_fails_without_any_gpu(fake_machine):
    result = fake_machine(["python3", "benchmarks/gpu_env.py"], gpu=False, cupy=False)
    assert result.returncode == 1
    assert "FAIL gpu_env: no GPU is visible (nvidia-smi lists none" in result.stderr


def test_env_runs_a_first_kernel_and_fails_when_triton_has_no_gpu_driver(fake_machine, tmp_path):
    """A usable "GPU" (the CUDA emulator of cuda_emulator.py as CuPy): the cuda kernels load and run their first
    launch; Triton, beside a torch without CUDA, has no GPU driver, which fails the stage and says so."""
    from cuda_emulator import compiler
    if compiler() is None:
        pytest.skip("no C++ compiler (g++): the CUDA kernels cannot be emulated here")
    write(str(tmp_path / "emulated" / "cupy" / "__init__.py"), f'''
        import sys
        sys.path.insert(0, {os.path.join(ROOT, "tests")!r})
        import numpy
        from cuda_emulator import fake_cupy
        globals().update({{k: v for k, v in vars(fake_cupy()).items() if not k.startswith("__")}})
        asnumpy, __version__ = numpy.asarray, "emulated"
        ''')
    result = fake_machine(["python3", "benchmarks/gpu_env.py"], cupy=False, torch=None,
                          PYTHONPATH=str(tmp_path / "emulated"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "fastgan's GPU probe: 1 CUDA device(s); a test kernel compiled and ran" in result.stdout
    assert "fastgan cuda   : OK (compiled and ran a first kernel)" in result.stdout
    assert "FAIL gpu_env: fastgan's 'triton' GPU kernels: fastgan.kernels.triton: Triton" in result.stderr
    assert "cannot launch on the GPU: RuntimeError: 0 active drivers" in result.stderr


def test_gpu_check_prefers_python3_and_fails_loudly_into_its_stage_file(fake_machine, tmp_path):
    out = tmp_path / "out"
    result = fake_machine(["bash", "benchmarks/gpu_check.sh", "env"], OUT=str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the wrong python ran" not in result.stdout + result.stderr
    assert os.listdir(out) == ["gpu_env.txt"]
    text = (out / "gpu_env.txt").read_text()
    lines = text.splitlines()
    assert lines[0].startswith("fastgan GPU check, stage env") and lines.count(lines[2]) == 1
    assert lines[2].startswith("python     ") and lines[3].startswith("numpy      "), "the versions come first"
    assert "a GPU is visible but fastgan cannot use it" in text and COMPILE_ERROR in text
    assert text.rstrip().splitlines()[-1].startswith("RESULT env: FAIL (exit status 1")
    assert result.stdout.rstrip().endswith("gpu_check: env: FAIL")


def test_gpu_check_refuses_unknown_stages_and_a_spent_budget(fake_machine, tmp_path):
    result = fake_machine(["bash", "benchmarks/gpu_check.sh", "everything"], OUT=str(tmp_path))
    assert result.returncode == 2 and "unknown stage 'everything'" in result.stderr
    result = fake_machine(["bash", "benchmarks/gpu_check.sh", "train"], OUT=str(tmp_path), GPU_CHECK_BUDGET="10")
    assert result.returncode == 1
    assert "RESULT train: FAIL (not started:" in (tmp_path / "gpu_train.txt").read_text()


def test_the_bf16_step_stage_runs_the_step_benchmark_under_autocast_and_fails_without_a_gpu(fake_machine, tmp_path):
    result = fake_machine(["bash", "benchmarks/gpu_check.sh", "step-bf16"], OUT=str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    text = (tmp_path / "gpu_step-bf16.txt").read_text()
    assert "benchmarks/gpu_step.py --precision bf16" in text and "FAIL gpu_step: no GPU that fastgan can use" in text
    assert text.rstrip().splitlines()[-1].startswith("RESULT step-bf16: FAIL (exit status 1")


def test_a_skipped_test_fails_under_the_gpu_checks_pytest_plugin(tmp_path):
    write(str(tmp_path / "test_skips.py"), '''
        import pytest

        def test_skips():
            pytest.skip("no GPU to test on")

        @pytest.mark.xfail(reason="known", strict=True)
        def test_xfails():
            assert False
        ''')
    write(str(tmp_path / "test_skips_module.py"), '''
        import pytest
        pytest.skip("CuPy is not installed", allow_module_level=True)
        ''')
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "gpu_pytest_plugin",
                             "-rfE", "--continue-on-collection-errors", str(tmp_path)], cwd=tmp_path,
                            capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=BENCHMARKS))
    assert result.returncode == 1, result.stdout
    assert "skipped, which the GPU check does not allow" in result.stdout
    assert "no GPU to test on" in result.stdout and "CuPy is not installed" in result.stdout
    assert "1 failed, 1 xfailed, 1 error" in result.stdout


def test_the_gpu_tests_fail_to_collect_when_a_visible_gpu_cannot_compile(fake_machine):
    result = fake_machine(["python3", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_gpu.py"], torch=None)
    assert result.returncode != 0, result.stdout
    assert "a GPU is visible but fastgan cannot use it: CuPy sees 1 CUDA device(s)" in result.stdout
