"""A convolution is one matrix product, and a transposed convolution is its adjoint — seen on numbers.

    python examples/conv_as_gemm.py

1. im2col copies every 2×2 patch of a 1×1×3×3 image into a column; the convolution is weight-row × columns.
2. col2im is im2col's adjoint: <im2col(x), c> = <x, col2im(c)> for every x and c.
3. The transposed convolution y = col2im(Wᵀ·x) — its gradients derived index by index, then checked against
   fastgan's kernels (kernels/reference.py) and against central differences.
"""
import numpy as np

from fastgan.kernels import reference as K

rng = np.random.default_rng(0)

# --- 1. im2col: the patches as columns ---------------------------------------------------------------------------
x = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
cols = K.im2col(x, (2, 2), (1, 1), (0, 0))
print("x =\n", x[0, 0])
print("im2col(x), one column per output pixel, one row per kernel offset:\n", cols)
w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])                       # (O=1, C=1, 2, 2)
y_gemm = (w.reshape(1, -1) @ cols).reshape(1, 1, 2, 2)
y_loops = np.array([[x[0, 0, p:p + 2, q:q + 2].ravel() @ w.ravel() for q in range(2)] for p in range(2)])
assert np.allclose(y_gemm[0, 0], y_loops) and np.allclose(y_gemm, K.conv2d_forward(x, w, None, (1, 1), (0, 0)))
print("conv = weight row × columns:\n", y_gemm[0, 0])

# --- 2. col2im is the adjoint of im2col ---------------------------------------------------------------------------
shape, kernel, stride, padding = (2, 3, 5, 6), (3, 3), (2, 1), (1, 1)
x = rng.standard_normal(shape)
c = rng.standard_normal(K.im2col(x, kernel, stride, padding).shape)
lhs = np.sum(K.im2col(x, kernel, stride, padding) * c)
rhs = np.sum(x * K.col2im(c, shape, kernel, stride, padding))
print(f"<im2col x, c> = {lhs:.12f}\n<x, col2im c> = {rhs:.12f}")
assert abs(lhs - rhs) < 1e-9 * max(1.0, abs(lhs))

# --- 3. the transposed convolution and its gradients, index by index ------------------------------------------------
# y[n, co, p·s + i − pad, q·s + j − pad] += x[n, ci, p, q] · W[ci, co, i, j]     (every input pixel paints a kh×kw
# patch of the output). For a loss L with upstream ḡ = dL/dy, each term above contributes
#   dL/dx[n, ci, p, q] += W[ci, co, i, j] · ḡ[n, co, p·s + i − pad, q·s + j − pad]   — a plain convolution of ḡ,
#   dL/dW[ci, co, i, j] += x[n, ci, p, q] · ḡ[n, co, p·s + i − pad, q·s + j − pad]   — a correlation of x with ḡ.
def conv_transpose_loops(x, w, s, pad):
    n, cin, h, wd = x.shape
    cout, kh, kw = w.shape[1:]
    y = np.zeros((n, cout, (h - 1) * s - 2 * pad + kh, (wd - 1) * s - 2 * pad + kw))
    for b, ci, p, q, co, i, j in np.ndindex(n, cin, h, wd, cout, kh, kw):
        r, t = p * s + i - pad, q * s + j - pad
        if 0 <= r < y.shape[2] and 0 <= t < y.shape[3]:
            y[b, co, r, t] += x[b, ci, p, q] * w[ci, co, i, j]
    return y


def conv_transpose_grads_loops(g, x, w, s, pad):
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    n, cin, h, wd = x.shape
    cout, kh, kw = w.shape[1:]
    for b, ci, p, q, co, i, j in np.ndindex(n, cin, h, wd, cout, kh, kw):
        r, t = p * s + i - pad, q * s + j - pad
        if 0 <= r < g.shape[2] and 0 <= t < g.shape[3]:
            dx[b, ci, p, q] += w[ci, co, i, j] * g[b, co, r, t]
            dw[ci, co, i, j] += x[b, ci, p, q] * g[b, co, r, t]
    return dx, dw


x, w, s, pad = rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((3, 2, 4, 4)), 2, 1
y = K.conv_transpose2d_forward(x, w, None, (s, s), (pad, pad), (0, 0))
assert np.allclose(y, conv_transpose_loops(x, w, s, pad))
g = rng.standard_normal(y.shape)
dx, dw, _ = K.conv_transpose2d_backward(g, x, w, (s, s), (pad, pad), (0, 0), (True, True, False))
dx_loops, dw_loops = conv_transpose_grads_loops(g, x, w, s, pad)
assert np.allclose(dx, dx_loops) and np.allclose(dw, dw_loops)
assert np.allclose(dx, K.conv2d_forward(g, w, None, (s, s), (pad, pad)))   # x̄ is conv2d(ḡ, W): the adjoint's adjoint

# central differences of L = <y(x, W), g> at one entry of each
eps = 1e-6
for name, a, analytic in (("x", x, dx), ("W", w, dw)):
    idx = (1, 2, 3, 0) if name == "x" else (2, 1, 0, 3)
    a[idx] += eps
    plus = np.sum(K.conv_transpose2d_forward(x, w, None, (s, s), (pad, pad), (0, 0)) * g)
    a[idx] -= 2 * eps
    minus = np.sum(K.conv_transpose2d_forward(x, w, None, (s, s), (pad, pad), (0, 0)) * g)
    a[idx] += eps
    numeric = (plus - minus) / (2 * eps)
    print(f"dL/d{name}{list(idx)}: kernel {analytic[idx]:+.8f}, central difference {numeric:+.8f}")
    assert abs(numeric - analytic[idx]) < 1e-6
print("the transposed convolution's gradients: loops, kernels and central differences agree")
