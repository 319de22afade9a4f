"""Optimisers that update parameters in place. The update itself is a kernel (kernels/reference.py: adam_step,
sgd_step), so a fast implementation replaces it without touching this file.

Hyper-parameters are checked when an optimiser is built: a NaN or infinite learning rate, or a β outside [0, 1),
would otherwise turn every weight into NaN at the first step, long after the mistake was made."""
import math

import numpy as np

from . import backend, dispatch


def _check(optimizer, name, value, ok, requirement):
    if not ok(value):
        raise ValueError(f"{type(optimizer).__name__}: {name} must be {requirement}, got {value!r}")


def _number(value):
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _finite_at_least_0(value):
    return _number(value) and math.isfinite(value) and value >= 0


class Optimizer:
    # what a parameter's entry of `state` holds once it has been updated (checkpoints check a saved state against it)
    STATE_ARRAYS = ()    # buffers shaped like the parameter
    STATE_NUMBERS = ()   # plain numbers

    def __init__(self, params, lr):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        _check(self, "learning rate", lr, lambda v: _number(v) and math.isfinite(v) and v > 0, "a finite number > 0")
        self.lr = lr
        self.state = [{} for _ in self.params]  # per parameter: step count and moment buffers
        self.before_step = None  # called with the parameters before each update: e.g. the gradients' average over
                                 # data-parallel ranks (fastgan.distributed.GradientAverager)

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    def step(self):
        if self.before_step is not None:
            self.before_step(self.params)
        for p, state in zip(self.params, self.state):
            if p.grad is not None:
                self._update(p, p.grad.data, state)

    def state_dict(self):
        """Hyper-parameters and buffers as NumPy arrays (device independent), for checkpoints."""
        return {"lr": self.lr, "hyper": self._hyper(),
                "state": [{k: backend.to_numpy(v) if hasattr(v, "shape") else v for k, v in s.items()}
                          for s in self.state]}

    def load_state_dict(self, saved):
        if len(saved["state"]) != len(self.params):
            raise ValueError(f"{type(self).__name__}.load_state_dict: checkpoint has {len(saved['state'])} "
                             f"parameters, optimiser has {len(self.params)}")
        self.lr = saved["lr"]
        for name, value in saved["hyper"].items():
            setattr(self, name, tuple(value) if isinstance(value, list) else value)  # (a list, if read from JSON)
        self.state = []
        for p, s in zip(self.params, saved["state"]):
            xp = backend.xp(p.data)
            self.state.append({k: xp.array(v, dtype=p.dtype) if hasattr(v, "shape") else v for k, v in s.items()})


class Adam(Optimizer):
    """Adam (Kingma & Ba), as torch.optim.Adam; weight_decay adds an L2 term to the gradient."""
    STATE_ARRAYS = ("exp_avg", "exp_avg_sq")
    STATE_NUMBERS = ("step",)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        _check(self, "betas", betas, lambda b: isinstance(b, (tuple, list)) and len(b) == 2
               and all(_number(x) and 0 <= x < 1 for x in b), "two numbers in [0, 1)")
        _check(self, "eps", eps, _finite_at_least_0, "a finite number >= 0")
        _check(self, "weight_decay", weight_decay, _finite_at_least_0, "a finite number >= 0")
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay

    def _hyper(self):
        return {"betas": self.betas, "eps": self.eps, "weight_decay": self.weight_decay}

    def _update(self, p, grad, state):
        if not state:
            xp = backend.xp(p.data)
            state.update(step=0, exp_avg=xp.zeros_like(p.data), exp_avg_sq=xp.zeros_like(p.data))
        state["step"] += 1
        dispatch.kernel("adam_step", p.device)(p.data, grad, state["exp_avg"], state["exp_avg_sq"], state["step"],
                                               self.lr, self.betas[0], self.betas[1], self.eps, self.weight_decay)


class SGD(Optimizer):
    """Stochastic gradient descent with (optionally Nesterov) momentum, as torch.optim.SGD."""
    STATE_ARRAYS = ("momentum_buffer",)

    def __init__(self, params, lr=1e-2, momentum=0.0, weight_decay=0.0, dampening=0.0, nesterov=False):
        super().__init__(params, lr)
        for name, value in (("momentum", momentum), ("weight_decay", weight_decay), ("dampening", dampening)):
            _check(self, name, value, _finite_at_least_0, "a finite number >= 0")
        self.momentum, self.weight_decay, self.dampening, self.nesterov = momentum, weight_decay, dampening, nesterov

    def _hyper(self):
        return {"momentum": self.momentum, "weight_decay": self.weight_decay, "dampening": self.dampening,
                "nesterov": self.nesterov}

    def _update(self, p, grad, state):
        first_step = self.momentum != 0 and "momentum_buffer" not in state
        if first_step:
            state["momentum_buffer"] = backend.xp(p.data).zeros_like(p.data)
        dispatch.kernel("sgd_step", p.device)(p.data, grad, state.get("momentum_buffer"), self.lr, self.momentum,
                                              self.weight_decay, self.dampening, self.nesterov, first_step)
