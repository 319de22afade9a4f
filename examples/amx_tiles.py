"""How an AMX tile multiplies bfloat16 matrices, written out in NumPy and checked against fastgan's GEMM.

    python examples/amx_tiles.py

An AMX tile register holds 16 rows of 64 bytes. TDPBF16PS, the bfloat16 product, takes three of them:
    C  16 × 16 float32                       the accumulator
    A  16 × 32 bfloat16                      16 rows of A, 32 steps of the sum (K)
    B  16 rows of 16 *pairs* of bfloat16     row k holds B[2k, n], B[2k+1, n] side by side, n = 0 … 15
and does, for every m and n, with k = 0 … 15 in order and each addition rounded to float32:
    C[m, n] += A[m, 2k]·B[2k, n];  C[m, n] += A[m, 2k+1]·B[2k+1, n]
A product of two bfloat16 values (8 significant bits each) is exact in float32, so the only roundings are those of
the additions, and an implementation that adds in the same order gets the same bits. So B must be repacked into
pairs ("VNNI" layout) before it is loaded; csrc/cpu/gemm_bf16.cpp packs whole matrices into such tiles, rounding
float32 to bfloat16 as it goes, and sums blocks of C over K one tile of 32 at a time.
"""
import numpy as np

from fastgan import dispatch
from fastgan.kernels import reference

rng = np.random.default_rng(0)
M, K, N = 16, 64, 16                                   # two tiles of K
a = reference.round_to_bfloat16(rng.standard_normal((M, K)).astype(np.float32))
b = reference.round_to_bfloat16(rng.standard_normal((K, N)).astype(np.float32))


def vnni(b_tile):
    """A (32, 16) block of B as the B tile holds it: (16 rows, 16 columns, a pair each)."""
    return b_tile.reshape(16, 2, 16).transpose(0, 2, 1)


def tdpbf16ps(c, a_tile, b_pairs):
    """Intel's definition of the instruction, vectorised over m and n: the additions in its order, in float32."""
    for k in range(16):
        c = c + a_tile[:, 2 * k, None] * b_pairs[None, k, :, 0]
        c = c + a_tile[:, 2 * k + 1, None] * b_pairs[None, k, :, 1]
    return c


print("row 0 of the B tile holds, as (row, column) of B:", " ".join(f"({e},{n})" for n in range(3) for e in range(2)),
      "…")
assert np.array_equal(vnni(b[:32])[0, 1], [b[0, 1], b[1, 1]])  # column 1 of row 0: B[0, 1], B[1, 1]

c = np.zeros((M, N), np.float32)
for kb in range(K // 32):                              # the accumulator stays; each step loads a new A and B tile
    c = tdpbf16ps(c, a[:, 32 * kb:32 * kb + 32], vnni(b[32 * kb:32 * kb + 32]))

exact = a.astype(np.float64) @ b.astype(np.float64)
print(f"largest difference from the exact product: {np.abs(c - exact).max():.2e} (float32 sums of 64 terms)")
assert np.allclose(c, exact, rtol=1e-5, atol=1e-5)

cpu = dispatch.implementation("cpu")
if cpu is None:
    print("fastgan's native kernels are not built here: the comparison with its GEMM is skipped")
else:
    # the emulated path runs the same instruction definition in C++: the same additions in the same order
    emulated = cpu.gemm_bf16(a, b, "emulated")
    assert np.array_equal(emulated, c), "the C++ emulation adds in another order"
    print("fastgan's emulated tile GEMM (csrc/cpu/gemm_bf16.cpp): bit for bit the NumPy version above")
    # (on a CPU with AMX, cpu.gemm_bf16(a, b, "amx") runs the instruction itself; tests/test_bfloat16.py and
    # benchmarks/gpu_check.sh cpu-bf16 check it against the reference)
