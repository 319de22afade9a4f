"""`python -m fastgan.kernels`: which implementation runs each kernel on this machine."""
from fastgan import dispatch

print(f"available implementations: {', '.join(dispatch.available())}")
for op, impl in sorted(dispatch.describe("cpu").items()):
    print(f"  {op:32s} {impl}")
