"""`python -m fastgan.kernels`: which implementation runs each kernel on this machine, and why any does not load."""
from fastgan import backend, dispatch

print(f"available implementations: {', '.join(dispatch.available())}")
for name in sorted(dispatch.DEVICE_OF):
    if dispatch.why_unavailable(name):
        print(f"  {name} is not available: {dispatch.why_unavailable(name)}")
print(f"GPU: {backend.cuda_status().detail}")
for device in ("cpu", "cuda") if dispatch.available("cuda") else ("cpu",):
    print(f"on the {device}:")
    for op, impl in sorted(dispatch.describe(device).items()):
        print(f"  {op:32s} {impl}")
cpu = dispatch.implementation("cpu")
if cpu is not None:
    print("float32 convolutions on the cpu: " + ("direct (AVX-512)" if cpu._DIRECT else "im2col + BLAS (no AVX-512)"))
    print("bfloat16 products on the cpu (*_bf16, fastgan.autocast): " + cpu.bfloat16_path())
