"""A generator with virtual batch norm: every forward runs the fixed reference batch first, then the real batch.

    G(z):  net(reference_input) inside nn.reference_pass(net)   each VirtualBatchNorm2d records μ_ref, E_ref[x²]
           net(z)                                               each example normalised with reference + itself

`reference_input` is a buffer, so it is saved with G's weights (state_dict) and a resumed run uses the same one.
It is G's input for the reference batch: noise, plus the one-hot class channels for a conditional G (the
ConditionalGenerator wraps this module, so the reference batch carries fixed, balanced labels). An example's
output depends only on its own z and the reference batch, never on the other examples of its batch.
"""
from .. import functional as F
from .. import nn
from .conditional import one_hot


def reference_input(noise, labels=None):
    """G's input for the reference batch: the noise, with the one-hot labels appended as channels if given."""
    if labels is None:
        return noise
    code = one_hot(labels, noise, who="VBN reference batch")
    return F.cat([noise, F.reshape(code, code.shape + (1,) * (noise.ndim - 2))], dim=1)


class VirtualBatchNormGenerator(nn.Module):
    def __init__(self, net, reference_input):
        super().__init__()
        if not any(isinstance(m, nn.VirtualBatchNorm2d) for m in net.modules()):
            raise ValueError("VirtualBatchNormGenerator: the network has no VirtualBatchNorm2d layer")
        self.net = net
        self.register_buffer("reference_input", reference_input.detach())

    def forward(self, z):
        if z.shape[1:] != self.reference_input.shape[1:]:
            raise ValueError(f"VirtualBatchNormGenerator: input {z.shape} does not match the reference batch "
                             f"{self.reference_input.shape} (same shape per example expected)")
        try:
            with nn.reference_pass(self.net):
                self.net(self.reference_input)
            return self.net(z)
        finally:
            nn.forget_reference(self.net)  # the graph of the reference pass lives on in the output's graph only
