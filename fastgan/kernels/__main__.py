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
        print(f"  {op:32s} {impl or '-  (no implementation on this device)'}")
cpu = dispatch.implementation("cpu")
if cpu is not None:
    how = {"auto": "direct where the channels fill AVX-512 vectors and the images are 7 pixels or more on a side, "
                   "else im2col + BLAS" if cpu._DIRECT else
           "im2col + BLAS (this CPU has no AVX-512 for the direct kernels)",
           "im2col": "im2col + BLAS", "direct": "direct (AVX-512)"}
    print(f"float32 convolutions on the cpu: FASTGAN_CONV={cpu.conv_choice()}: {how[cpu.conv_choice()]}")
    print("bfloat16 products on the cpu (*_bf16, fastgan.autocast): " + cpu.bfloat16_path())
