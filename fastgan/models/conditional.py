"""GANs that are told the class: G(z, y) and a D that sees y (cGAN, projection) or predicts it (AC-GAN).

y is an integer class in [0, 10), one per image, given as an integer array or Tensor of shape (N,).

cGAN (Mirza & Osindero, 2014)   G(z, y) = G([z, onehot(y)]): the one-hot vector appended to z's channels.
                                D(x, y) = D([x, onehot(y) broadcast to 10 planes of x's size]).
projection (Miyato & Koyama, 2018)   D(x, y) = head(φ(x)) + ⟨embed_y, φ(x)⟩, φ(x) = D's flattened features and
                                embed a learned (10, |φ|) matrix: the class only enters through an inner product.
AC-GAN (Odena et al., 2016)     G as the cGAN's; D(x) does not see y but outputs 1 source logit + 10 class logits
                                (a models.discriminator.Discriminator with class_outputs = 10); the losses are in
                                fastgan/gan.py.

Bad labels (not integers, not one per image, outside [0, 10)) are refused with a message that names them.
"""
import numpy as np

from .. import backend, nn
from .. import functional as F
from ..random import generator
from ..tensor import Tensor

NUM_CLASSES = 10
CONDITIONAL_KINDS = ("cgan", "projection", "acgan")


def check_labels(labels, batch, num_classes=NUM_CLASSES, who="labels"):
    """The labels as an integer array (NumPy or CuPy) after checking them against a batch of `batch` images."""
    array = labels.data if isinstance(labels, Tensor) else labels
    if not hasattr(array, "dtype"):
        array = np.asarray(array)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{who}: class labels must be integers, got dtype {array.dtype} (shape {tuple(array.shape)})")
    if tuple(array.shape) != (batch,):
        raise ValueError(f"{who}: expected one class label per image, shape ({batch},), got shape "
                         f"{tuple(array.shape)}")
    if batch:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high >= num_classes:
            raise ValueError(f"{who}: class labels must lie in [0, {num_classes}), got values from {low} to {high}")
    return array


def one_hot(labels, like, num_classes=NUM_CLASSES, who="one_hot"):
    """(N,) labels -> (N, num_classes) constant Tensor of 0/1 with `like`'s dtype and device."""
    xp = backend.xp(like.data)
    array = xp.asarray(check_labels(labels, like.shape[0], num_classes, who))
    return Tensor(xp.eye(num_classes, dtype=like.dtype)[array])


def random_labels(n, num_classes=NUM_CLASSES, device="cpu"):
    """n classes drawn uniformly from fastgan's global generator (the labels requested of G in training)."""
    return Tensor(backend.array_module(device).asarray(generator().integers(0, num_classes, n)))


def reference_labels(n, num_classes=NUM_CLASSES):
    """Balanced labels 0, 1, ..., 9, 0, 1, ... for a fixed batch (a VBN reference batch): no random draw."""
    return Tensor(np.arange(n) % num_classes)


def grid_labels(per_class, num_classes=NUM_CLASSES):
    """0 × per_class, 1 × per_class, ...: a sample grid of `per_class` columns shows one digit per row."""
    return Tensor(np.repeat(np.arange(num_classes), per_class))


class ConditionalGenerator(nn.Module):
    """G(z, y) = net([z, onehot(y)]): z is (N, nz) or (N, nz, 1, 1); net takes nz + num_classes channels."""
    takes_labels = True

    def __init__(self, net, num_classes=NUM_CLASSES):
        super().__init__()
        self.net, self.num_classes = net, num_classes

    def forward(self, z, labels):
        code = one_hot(labels, z, self.num_classes, "ConditionalGenerator")
        code = F.reshape(code, code.shape + (1,) * (z.ndim - 2))  # as z: (N, 10) or (N, 10, 1, 1)
        return self.net(F.cat([z, code], dim=1))


class LabelPlanesDiscriminator(nn.Module):
    """cGAN D(x, y) = body([x, 10 planes]) with plane y all ones, the others zeros; body a Discriminator whose
    input has channels + num_classes channels. Features and head are the body's."""
    takes_labels = True
    class_outputs = 0  # it is told the class; it does not predict it

    def __init__(self, body, num_classes=NUM_CLASSES):
        super().__init__()
        self.body, self.num_classes = body, num_classes

    def _with_planes(self, x, labels):
        xp = backend.xp(x.data)
        code = one_hot(labels, x, self.num_classes, "LabelPlanesDiscriminator").data
        planes = xp.broadcast_to(code[:, :, None, None], (x.shape[0], self.num_classes) + x.shape[2:])
        return F.cat([x, Tensor(xp.ascontiguousarray(planes))], dim=1)

    def features(self, x, labels):
        return self.body.features(self._with_planes(x, labels))

    def head(self, features, labels):
        return self.body.head(features)

    def forward(self, x, labels, return_features=False):
        return self.body(self._with_planes(x, labels), return_features)


class ProjectionDiscriminator(nn.Module):
    """D(x, y) = body.head(φ) + Σ_k φ_k · embed[y, k], φ = body.features(x) flattened (feature_size values);
    embed ~ N(0, 0.02) as D's other weights."""
    takes_labels = True
    class_outputs = 0

    def __init__(self, body, feature_size, num_classes=NUM_CLASSES):
        super().__init__()
        self.body, self.num_classes = body, num_classes
        self.embed = nn.Parameter(np.zeros((num_classes, feature_size), np.float32))
        nn.init.normal_(self.embed, 0.0, 0.02)

    def features(self, x, labels=None):
        return self.body.features(x)

    def head(self, features, labels):
        flat = F.reshape(features, (features.shape[0], -1))
        if flat.shape[1] != self.embed.shape[1]:
            raise ValueError(f"ProjectionDiscriminator: features {features.shape} do not have the "
                             f"{self.embed.shape[1]} values per image of the class embedding {self.embed.shape}")
        code = one_hot(labels, flat, self.num_classes, "ProjectionDiscriminator")
        projection = F.sum(flat * F.matmul(code, self.embed), dim=1, keepdim=True)   # ⟨embed_y, φ⟩, (N, 1)
        return self.body.head(features) + projection

    def forward(self, x, labels, return_features=False):
        features = self.features(x)
        out = self.head(features, labels)
        return (out, features) if return_features else out
