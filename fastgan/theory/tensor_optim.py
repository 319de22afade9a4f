"""Optimiser steps on the tape, so that the weights they return stay functions of whatever their gradients depend
on: the exact unrolled GAN differentiates G's loss through K of D's steps. SGD's step is written in tensor ops;
Adam's three updates are one recorded op each, with their derivatives written out.

Each step follows its optimiser's kernel formula for formula (kernels/reference.py: adam_step, sgd_step) and starts
from the optimiser's hyper-parameters and current state (step count, moment estimates), which it copies: the
optimiser and the weights it holds are never changed.

    steps = tensor_steps(opt)                     # opt: an optim.Adam or optim.SGD
    weights = steps(weights, grads)               # one step; call again for the next (the moments carry on)
"""
from .. import autograd, backend, optim
from ..tensor import Tensor


class AdamSteps:
    """optim.Adam's update on the tape (torch.optim.Adam's formula, L2 weight decay):
        g = grad + weight_decay·θ;  m ← m + (1-β1)(g - m);  v ← β2·v + (1-β2)·g²
        θ ← θ − lr/(1-β1^t) · m / (√v / √(1-β2^t) + eps)
    Each of the three updates is one recorded op (fastgan.autograd.op) with its derivative written out below, not
    the dozen elementwise ops the formulas are made of: the exact look-ahead makes K of these steps per weight and
    G's backward runs through all of them, so the tape stays short. (They have a first derivative only, which is
    all that G's gradient needs; the gradients of gradients are D's.)
    """

    def __init__(self, opt):
        self.lr, (self.beta1, self.beta2), self.eps, self.weight_decay = opt.lr, opt.betas, opt.eps, opt.weight_decay
        self.step = [s.get("step", 0) for s in opt.state]
        self.exp_avg = [_moment(s, "exp_avg", p) for s, p in zip(opt.state, opt.params)]
        self.exp_avg_sq = [_moment(s, "exp_avg_sq", p) for s, p in zip(opt.state, opt.params)]

    def __call__(self, weights, grads):
        new = []
        for i, (w, g) in enumerate(zip(weights, grads)):
            if self.weight_decay:
                g = g + self.weight_decay * w
            self.step[i] += 1
            self.exp_avg[i] = m = self._first_moment(self.exp_avg[i], g)
            self.exp_avg_sq[i] = v = self._second_moment(self.exp_avg_sq[i], g)
            new.append(self._weight(w, m, v, self.step[i]))
        return new

    def _first_moment(self, m, g):
        # m' = m + (1-β1)(g - m):  ∂m'/∂m = β1, ∂m'/∂g = 1-β1
        c = 1 - self.beta1
        return autograd.op(m.data + c * (g.data - m.data), (m, g), lambda grad: (grad * self.beta1, grad * c),
                           "adam_m")

    def _second_moment(self, v, g):
        # v' = β2·v + (1-β2)·g²:  ∂v'/∂v = β2, ∂v'/∂g = 2(1-β2)·g
        c, gd = 1 - self.beta2, g.data
        return autograd.op(self.beta2 * v.data + c * (gd * gd), (v, g),
                           lambda grad: (grad * self.beta2, grad * (2 * c) * gd), "adam_v")

    def _weight(self, w, m, v, t):
        # θ' = θ − a·m/d with a = lr/(1-β1^t), d = √v/c + eps, c = √(1-β2^t):
        #   ∂θ'/∂θ = 1,  ∂θ'/∂m = −a/d,  ∂θ'/∂v = a·m/d² · 1/(2c√v)
        a, c = self.lr / (1 - self.beta1 ** t), (1 - self.beta2 ** t) ** 0.5
        root = v.data ** 0.5
        d = root / c + self.eps

        def backward(grad):
            return grad, -grad * a / d, grad * a * m.data / (d * d) / (2 * c * root)
        return autograd.op(w.data - m.data / d * a, (w, m, v), backward, "adam_weight")
class SGDSteps:
    """optim.SGD's update as tensor ops (torch.optim.SGD's formula):
        g = grad + weight_decay·θ;  b ← g on the first step, else momentum·b + (1-dampening)·g
        θ ← θ − lr·(g + momentum·b if nesterov else b)      (θ ← θ − lr·g without momentum)
    """

    def __init__(self, opt):
        self.lr, self.momentum, self.weight_decay = opt.lr, opt.momentum, opt.weight_decay
        self.dampening, self.nesterov = opt.dampening, opt.nesterov
        self.buffers = [_moment(s, "momentum_buffer", p) if "momentum_buffer" in s else None
                        for s, p in zip(opt.state, opt.params)]

    def __call__(self, weights, grads):
        new = []
        for i, (w, g) in enumerate(zip(weights, grads)):
            if self.weight_decay:
                g = g + self.weight_decay * w
            if self.momentum:
                b = self.buffers[i]
                self.buffers[i] = b = g if b is None else self.momentum * b + (1 - self.dampening) * g
                g = g + self.momentum * b if self.nesterov else b
            new.append(w - self.lr * g)
        return new


def _moment(state, name, param):
    """An optimiser's buffer as a constant Tensor (a copy), zeros before the optimiser's first step."""
    array = state.get(name)
    return Tensor(backend.xp(param.data).zeros_like(param.data) if array is None else array.copy())


STEPS = {optim.Adam: AdamSteps, optim.SGD: SGDSteps}


def tensor_steps(opt):
    """The tensor-op steps of optimiser `opt`, starting from its current state."""
    if type(opt) not in STEPS:
        raise TypeError(f"no tensor-op steps for optimiser {type(opt).__name__}: expected one of "
                        f"{sorted(c.__name__ for c in STEPS)}")
    return STEPS[type(opt)](opt)
