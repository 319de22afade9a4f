"""The MLP GAN of the original paper (Goodfellow et al., 2014, MNIST; its public pylearn2 code).

G: z ∈ U(−√3, √3)^100 → Linear 1200 → ReLU → Linear 1200 → ReLU → Linear 784 → sigmoid → (N, 1, 28, 28) in [0, 1]
   weights U(±0.05), biases 0; the output bias starts at logit(mean training pixel), so G's very first samples
   already have the data's average brightness per pixel (pylearn2's init_bias_target_marginals).
D: x → flatten → dropout(keep 0.8) → Maxout 240×5 → dropout(keep 0.5) → Maxout 240×5 → dropout(keep 0.5)
   → Linear 1 (a logit; the sigmoid is folded into the loss). Weights U(±0.005), biases 0.
Dropout is inverted (kept units are scaled by 1/keep: 1.25 and 2) and stays on whenever D is in training mode,
including while G trains against it.

D's features (feature matching) are the output of its second maxout layer: 240 values per image. With
minibatch=(B, C), a MinibatchDiscrimination(240, B, C) comes before the last Linear, which then takes 240 + B.
"""
import numpy as np

from .. import nn
from .discriminator import Discriminator
from .recipe import Recipe

G_HIDDEN, G_RANGE = 1200, 0.05
D_UNITS, D_PIECES, D_RANGE = 240, 5, 0.005
PIXEL_CLIP = 1e-3  # the marginals are clipped to [1e-3, 1 − 1e-3] before the logit: no infinite bias

# SGD batch 100, lr 0.1 divided by 1.000004 per update (floor 1e-6), momentum 0.5 → 0.7 between epochs 1 and 250;
# train[0:50000] (train[50000:60000] is the validation set of the Parzen evaluation), pixels in [0, 1].
# As in the paper's public code, D minimises ½·(BCE on reals + BCE on fakes), and each update of both players comes
# from one forward pass (same samples, same dropout masks), G's gradient taken through D before D's update.
MLP_RECIPE = Recipe(optimizer="sgd", lr=0.1, batch_size=100, value_range=(0.0, 1.0), noise="uniform",
                    noise_shape="vector", train_images=50000, lr_decay=1.000004, lr_min=1e-6, momentum=(0.5, 0.7),
                    momentum_epochs=(1, 250), reference_epochs=250, pixel_mean_init=True,
                    update="simultaneous", d_loss_scale=0.5)


def _init(module, irange):
    """Every Linear weight ~ U(−irange, irange), every bias 0 (the pylearn2 convention)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.uniform_(m.weight, -irange, irange)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0.0)
    return module


def pixel_logits(pixel_mean):
    """logit(p) = log(p / (1 − p)) of the per-pixel mean, clipped away from 0 and 1."""
    p = np.clip(np.asarray(pixel_mean, dtype=np.float64).reshape(-1), PIXEL_CLIP, 1 - PIXEL_CLIP)
    return np.log(p) - np.log1p(-p)


def mlp_generator(nz=100, pixel_mean=None):
    G = _init(nn.Sequential(
        nn.Linear(nz, G_HIDDEN), nn.ReLU(),
        nn.Linear(G_HIDDEN, G_HIDDEN), nn.ReLU(),
        nn.Linear(G_HIDDEN, 784), nn.Sigmoid(),
        nn.Unflatten(1, 28, 28),
    ), G_RANGE)
    if pixel_mean is not None:
        bias = G[4].bias
        if np.size(pixel_mean) != bias.numel():
            raise ValueError(f"mlp_generator: pixel_mean must have 784 values (one per pixel), got "
                             f"{np.shape(pixel_mean)}")
        bias.data[...] = pixel_logits(pixel_mean).astype(bias.dtype)
    return G


def mlp_discriminator(minibatch=None):
    """minibatch: None or (B, C) of a MinibatchDiscrimination before the last layer."""
    features = [nn.Flatten(),
                nn.Dropout(0.2), nn.Maxout(784, D_UNITS, D_PIECES),
                nn.Dropout(0.5), nn.Maxout(D_UNITS, D_UNITS, D_PIECES)]
    if minibatch is None:
        head = [nn.Dropout(0.5), nn.Linear(D_UNITS, 1)]
    else:
        b, c = minibatch
        head = [nn.Dropout(0.5), nn.MinibatchDiscrimination(D_UNITS, b, c), nn.Linear(D_UNITS + b, 1)]
    return _init(Discriminator(*features, *head, feature_layers=len(features)), D_RANGE)


def mlp_gan_mnist(nz=100, pixel_mean=None, minibatch=None):
    """(G, D) of the 2014 paper for 28×28 MNIST; pixel_mean (784 values in [0, 1]) sets G's output bias."""
    return mlp_generator(nz, pixel_mean), mlp_discriminator(minibatch)
