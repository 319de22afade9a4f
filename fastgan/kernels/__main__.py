"""`python -m fastgan.kernels`: which implementation runs each kernel on this machine."""
from fastgan import dispatch

print(f"available implementations: {', '.join(dispatch.available())}")
for op, impl in sorted(dispatch.describe("cpu").items()):
    print(f"  {op:32s} {impl}")
cpu = dispatch.implementation("cpu")
if cpu is not None:
    print("float32 convolutions on the cpu: " + ("direct (AVX-512)" if cpu._DIRECT else "im2col + BLAS (no AVX-512)"))
