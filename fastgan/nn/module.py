"""Module: a container of parameters, buffers and sub-modules, found by attribute assignment (as in torch)."""
from collections import OrderedDict

import numpy as np

from .. import backend
from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimiser updates: a leaf that requires grad."""

    def __init__(self, data):
        super().__init__(data, requires_grad=True)


class Module:
    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name, tensor):
        """State that is saved and moved with the module but not trained (e.g. batch norm's running mean)."""
        setattr(self, name, tensor)
        self._buffers[name] = tensor

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # --- walking the tree ------------------------------------------------------------------------------------------
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}{name}.")

    def modules(self):
        return [m for _, m in self.named_modules()]

    def apply(self, fn):
        """Call fn(m) on every sub-module and then on this one (as torch: e.g. a custom initialisation)."""
        for child in self._modules.values():
            child.apply(fn)
        fn(self)
        return self

    def named_parameters(self):
        for prefix, module in self.named_modules():
            for name, p in module._parameters.items():
                yield prefix + name, p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self):
        for prefix, module in self.named_modules():
            for name, b in module._buffers.items():
                yield prefix + name, b

    # --- modes and gradients ---------------------------------------------------------------------------------------
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def to(self, device):
        """Move every parameter and buffer to `device` in place (the Parameter objects stay the same)."""
        xp, device = backend.array_module(device), backend.normalize_device(device)
        for _, t in list(self.named_parameters()) + list(self.named_buffers()):
            if backend.device_of(t.data) != device:  # (already there: no copy, and no trip through the host)
                t.data = xp.asarray(backend.to_numpy(t.data)) if xp is not np else backend.to_numpy(t.data)
            t.grad = None
        return self

    def astype(self, dtype):
        """Cast every floating parameter and buffer in place (e.g. np.float64 for tight gradient checks)."""
        for _, t in list(self.named_parameters()) + list(self.named_buffers()):
            if t.dtype.kind == "f":
                t.data = t.data.astype(dtype)
        return self

    def double(self):
        return self.astype(np.float64)

    # --- saving and loading ----------------------------------------------------------------------------------------
    def state_dict(self):
        """{name: NumPy copy} of every parameter and buffer."""
        items = list(self.named_parameters()) + list(self.named_buffers())
        return OrderedDict((name, np.array(backend.to_numpy(t.data), copy=True)) for name, t in items)

    def load_state_dict(self, state):
        """Copy values in place; the names and shapes must match exactly."""
        own = OrderedDict(list(self.named_parameters()) + list(self.named_buffers()))
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise KeyError(f"load_state_dict for {type(self).__name__}: missing {missing}, unexpected {unexpected}")
        for name, t in own.items():
            value = np.asarray(backend.to_numpy(state[name]))
            if tuple(value.shape) != t.shape:
                raise ValueError(f"load_state_dict: {name} has shape {t.shape}, checkpoint has {tuple(value.shape)}")
            t.data = backend.xp(t.data).asarray(value, dtype=t.dtype).copy()

    def __repr__(self):
        lines = [f"  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()]
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        return f"{type(self).__name__}({extra}\n" + "\n".join(lines) + "\n)"

    def extra_repr(self):
        return ""


class Sequential(Module):
    """Apply the given modules one after the other."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            setattr(self, str(i), m)

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x
