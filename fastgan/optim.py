"""Optimisers that update parameters in place. The update itself is a kernel (kernels/reference.py: adam_step,
sgd_step), so a fast implementation replaces it without touching this file."""
import numpy as np

from . import backend, dispatch


class Optimizer:
    def __init__(self, params, lr):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if lr <= 0:
            raise ValueError(f"{type(self).__name__}: learning rate must be positive, got {lr}")
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
            setattr(self, name, value)
        self.state = []
        for p, s in zip(self.params, saved["state"]):
            xp = backend.xp(p.data)
            self.state.append({k: xp.array(v, dtype=p.dtype) if hasattr(v, "shape") else v for k, v in s.items()})


class Adam(Optimizer):
    """Adam (Kingma & Ba), as torch.optim.Adam; weight_decay adds an L2 term to the gradient."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
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

    def __init__(self, params, lr=1e-2, momentum=0.0, weight_decay=0.0, dampening=0.0, nesterov=False):
        super().__init__(params, lr)
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
