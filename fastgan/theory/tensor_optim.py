"""Optimiser steps written as tensor ops, so that the weights they return stay functions, on the tape, of whatever
their gradients depend on: the exact unrolled GAN differentiates G's loss through K of D's steps.

Each step follows its optimiser's kernel formula for formula (kernels/reference.py: adam_step, sgd_step) and starts
from the optimiser's hyper-parameters and current state (step count, moment estimates), which it copies: the
optimiser and the weights it holds are never changed.

    steps = tensor_steps(opt)                     # opt: an optim.Adam or optim.SGD
    weights = steps(weights, grads)               # one step; call again for the next (the moments carry on)
"""
from .. import backend, optim
from ..tensor import Tensor


class AdamSteps:
    """optim.Adam's update as tensor ops (torch.optim.Adam's formula, L2 weight decay):
        g = grad + weight_decay·θ;  m ← m + (1-β1)(g - m);  v ← β2·v + (1-β2)·g²
        θ ← θ − lr/(1-β1^t) · m / (√v / √(1-β2^t) + eps)
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
            t = self.step[i]
            self.exp_avg[i] = m = self.exp_avg[i] + (1 - self.beta1) * (g - self.exp_avg[i])
            self.exp_avg_sq[i] = v = self.beta2 * self.exp_avg_sq[i] + (1 - self.beta2) * (g * g)
            denom = v ** 0.5 / (1 - self.beta2 ** t) ** 0.5 + self.eps
            new.append(w - m / denom * (self.lr / (1 - self.beta1 ** t)))
        return new


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
