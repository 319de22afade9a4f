"""Loss modules with torch's names, for code written against torch.nn.

BCEWithLogitsLoss (sigmoid and BCE fused, stable for every logit) is what fastgan's own GANs use. BCELoss takes
probabilities (e.g. after nn.Sigmoid, as pytorch/examples' DCGAN does) and is the unfused form: in float32 a
logit above ~17 gives p = 1 exactly, where log(1 − p) = −inf is clamped to −100 (examples/fused_sigmoid_bce.py).
"""
from .. import functional as F
from .module import Module


class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in F.REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {F.REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    def extra_repr(self):
        return f"reduction={self.reduction!r}" if self.reduction != "mean" else ""


class BCELoss(_Loss):
    """Binary cross-entropy of probabilities in [0, 1] against targets (F.binary_cross_entropy)."""

    def forward(self, probabilities, target):
        return F.binary_cross_entropy(probabilities, target, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy of σ(logits) against targets, fused and stable (F.binary_cross_entropy_with_logits)."""

    def forward(self, logits, target):
        return F.binary_cross_entropy_with_logits(logits, target, self.reduction)
