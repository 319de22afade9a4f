"""One round of the GAN game (Goodfellow et al., 2014, Algorithm 1: k updates of D, then one of G), losses on logits.

D minimises  J_D = c·[BCE(D(x), real_label) + BCE(D(G(z)), 0)]  (real and fake batches normalised separately;
                                                                c = d_loss_scale: 1 in the DCGAN examples, ½ in
                                                                the 2014 paper's code — with SGD it scales D's lr)
G minimises  non-saturating: BCE(D(G(z)), 1) = −E log σ(s)      (the practical default)
             minimax:        −BCE(D(G(z)), 0) = E log(1 − σ(s))   (the zero-sum game; saturates early)
             ml:             −E exp(s)                           (the maximum-likelihood game; high variance)
             feature-matching: ‖E_x f(x) − E_z f(G(z))‖²        (Salimans et al., 2016; f = D's features, see
                                                                models/discriminator.py; D trains as usual)
The sigmoid and the cross-entropy are one fused, stable op on the logits s. real_label < 1 is one-sided label
smoothing (never smooth the fakes: it would reward G's mistakes).

Models that know the class (models/conditional.py) take it from the Batch: G(z, y) with y = fake_labels (the
classes requested of G); a D told the class sees D(x, y) with the real images' labels and with fake_labels. An
AC-GAN D (class_outputs = C) instead outputs [source logit, C class logits] and both players add cross-entropies:
    J_D += c·[CE(classes(x), y_real) + CE(classes(G(z, y)), y)]     (D classifies reals and fakes)
    J_G += CE(classes(G(z, y)), y)                                  (G is rewarded for fakes of the requested class)

Two ways to play one round, each given a list of K Batches (K = --d-steps, each a fresh real batch and fresh noise):
  alternating_round    K updates of D, one per batch; then G steps against the updated D, on the fakes of the
                       last batch (the DCGAN examples; with K = 1 exactly train_step).
  simultaneous_round   K − 1 updates of D; then on the last batch both players' gradients from one forward pass
                       (same samples, same dropout masks in D) and both step at once (the 2014 paper's public code,
                       where K = 1: one SGD update of all parameters).
train_step / simultaneous_step are the K = 1 unconditional rounds with a (real, z) pair instead of a Batch list.
"""
import contextlib
from dataclasses import dataclass

import numpy as np

from . import backend
from . import functional as F
from .tensor import Tensor, no_grad

G_LOSSES = ("non-saturating", "minimax", "ml")  # functions of D's logit on fakes
FEATURE_MATCHING = "feature-matching"          # a function of D's features on reals and fakes
ALL_G_LOSSES = G_LOSSES + (FEATURE_MATCHING,)


@dataclass
class Batch:
    """What one update of D sees: a batch of real images and a batch of noise, and for models that know the class,
    the real images' labels and the labels requested of G (integer arrays or Tensors of shape (N,))."""
    real: Tensor
    z: Tensor
    real_labels: object = None
    fake_labels: object = None


def generator_loss(fake_logits, kind="non-saturating"):
    if kind == "non-saturating":
        return F.binary_cross_entropy_with_logits(fake_logits, 1.0)
    if kind == "minimax":
        return -F.binary_cross_entropy_with_logits(fake_logits, 0.0)
    if kind == "ml":
        return -F.mean(F.exp(fake_logits))
    raise ValueError(f"unknown generator loss {kind!r}: expected one of {G_LOSSES}")


def feature_matching_loss(real_features, fake_features):
    """‖mean_i f(x_i) − mean_j f(G(z_j))‖²: the squared L2 distance between the batch means of the flattened
    features. The real side is a constant (only G is trained on this loss)."""
    real = F.reshape(real_features.detach(), (real_features.shape[0], -1))
    fake = F.reshape(fake_features, (fake_features.shape[0], -1))
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature_matching_loss: real features {real_features.shape} and fake features "
                         f"{fake_features.shape} differ")
    difference = F.mean(fake, 0) - F.mean(real, 0)
    return F.sum(difference * difference)


@contextlib.contextmanager
def frozen(module):
    """Within this block `module`'s parameters are constants to autograd."""
    params = module.parameters()
    for p in params:
        p.requires_grad = False
    try:
        yield
    finally:
        for p in params:
            p.requires_grad = True


# A round's statistics are computed where its arrays are, in float64, as it goes, and copied to the host together
# at its end (_read_back): one synchronisation per round. Read one by one, each would make the host wait for the
# device in the middle of the round, and a GPU would idle while the host then launched the rest of it.

def _value(tensor):
    """A tensor's values as a float64 array where they live (no read-back)."""
    return tensor.data.astype(np.float64)


def _mean_sigmoid(logits):
    xp, s = backend.xp(logits.data), _value(logits)
    return xp.mean(0.5 * (1 + xp.tanh(0.5 * s)))  # σ(s), written so it cannot overflow


def _accuracy(class_logits, labels):
    xp = backend.xp(class_logits.data)
    labels = xp.asarray(labels.data if isinstance(labels, Tensor) else labels)
    return xp.mean(class_logits.data.argmax(axis=1) == labels, dtype=np.float64)


def _read_back(stats):
    """{name: float}: the round's statistics, from one host copy of all of them."""
    xp = backend.xp(next(iter(stats.values())))
    host = backend.to_numpy(xp.stack([xp.asarray(v, dtype=np.float64).reshape(()) for v in stats.values()]))
    return dict(zip(stats, map(float, host)))


def _needed(labels, name, who):
    if labels is None:
        raise ValueError(f"{who} needs Batch.{name}: the class of every image")
    return labels


def _generate(G, batch):
    if getattr(G, "takes_labels", False):
        return G(batch.z, _needed(batch.fake_labels, "fake_labels", "a conditional generator"))
    return G(batch.z)


def _judge(D, images, labels, name, with_features=False):
    """D on a batch in one forward pass: (source logits (N, 1), class logits (N, C) or None, features or None).
    `labels` are the batch's classes (Batch.`name`), given to a D that is told the class."""
    args = (images,)
    if getattr(D, "takes_labels", False):
        args = (images, _needed(labels, name, "a discriminator told the class"))
    out, features = D(*args, return_features=True) if with_features else (D(*args), None)
    if getattr(D, "class_outputs", 0):
        return out[:, :1], out[:, 1:], features
    return out, None, features


def _d_objective(source, classes, target, labels, name):
    """BCE of the source logits against `target`, plus the class cross-entropy for an AC-GAN D."""
    loss = F.binary_cross_entropy_with_logits(source, target)
    if classes is not None:
        loss = loss + F.cross_entropy(classes, _needed(labels, name, "an AC-GAN discriminator"))
    return loss


def _g_objective(g_loss, source, classes, labels, fake_features=None, real_features=None):
    loss = (feature_matching_loss(real_features, fake_features) if g_loss == FEATURE_MATCHING
            else generator_loss(source, g_loss))
    if classes is not None:
        loss = loss + F.cross_entropy(classes, labels)
    return loss


def _check_round(G, D, batches, g_loss):
    """The batch list, checked before anything is computed or updated: a known loss, K ≥ 1 Batches, and the labels
    that the models need in every one of them (their values are checked by the models)."""
    if g_loss not in ALL_G_LOSSES:
        raise ValueError(f"unknown generator loss {g_loss!r}: expected one of {ALL_G_LOSSES}")
    batches = list(batches)
    if not batches:
        raise ValueError("a round needs at least one batch (K = d_steps ≥ 1 updates of D), got none")
    if not all(isinstance(b, Batch) for b in batches):
        raise TypeError(f"a round takes a list of gan.Batch, got {[type(b).__name__ for b in batches]}")
    told, classifies = getattr(D, "takes_labels", False), getattr(D, "class_outputs", 0)
    for batch in batches:
        if told or classifies:
            _needed(batch.real_labels, "real_labels", "an AC-GAN discriminator" if classifies else
                    "a discriminator told the class")
        if told or classifies or getattr(G, "takes_labels", False):
            _needed(batch.fake_labels, "fake_labels", "a conditional generator" if getattr(G, "takes_labels", False)
                    else "a discriminator told the class" if told else "an AC-GAN discriminator")
    return batches


def _discriminator_update(G, D, opt_d, batch, real_label, d_loss_scale):
    """One update of D on a real batch and the fakes of its noise. Returns (the fakes, still attached to G's graph;
    D's statistics). G's output enters D detached: this update must not change G."""
    opt_d.zero_grad()
    source, classes, _ = _judge(D, batch.real, batch.real_labels, "real_labels")
    loss_real = _d_objective(source, classes, real_label, batch.real_labels, "real_labels")
    (loss_real * d_loss_scale).backward()
    stats = {"d_x": _mean_sigmoid(source)}
    if classes is not None:
        stats["class_acc_real"] = _accuracy(classes, batch.real_labels)
    fake = _generate(G, batch)
    source, classes, _ = _judge(D, fake.detach(), batch.fake_labels, "fake_labels")
    loss_fake = _d_objective(source, classes, 0.0, batch.fake_labels, "fake_labels")
    (loss_fake * d_loss_scale).backward()
    opt_d.step()
    stats.update(loss_d=d_loss_scale * (_value(loss_real) + _value(loss_fake)), d_g_z1=_mean_sigmoid(source))
    return fake, stats


def alternating_round(G, D, opt_g, opt_d, batches, g_loss="non-saturating", real_label=1.0, d_loss_scale=1.0):
    """K updates of D (one per Batch), then one of G against the updated D on the last batch's fakes. Returns the
    losses and D's mean outputs of the last D update and of G's update as floats (d_g_z1: D(G(z)) before that
    D update, d_g_z2: after it), and for an AC-GAN D its class accuracy on those reals and fakes."""
    batches = _check_round(G, D, batches, g_loss)
    for batch in batches:
        fake, stats = _discriminator_update(G, D, opt_d, batch, real_label, d_loss_scale)

    # G: D's weights are frozen meanwhile, so the backward pass skips their gradients (it only needs D's input
    # gradient to reach G). Feature matching compares with the same real batch, seen by the updated D.
    opt_g.zero_grad()
    with frozen(D):
        real_features = None
        if g_loss == FEATURE_MATCHING:
            with no_grad():
                real_features = _judge(D, batch.real, batch.real_labels, "real_labels", with_features=True)[2]
        source, classes, fake_features = _judge(D, fake, batch.fake_labels, "fake_labels",
                                                with_features=g_loss == FEATURE_MATCHING)
        loss_g = _g_objective(g_loss, source, classes, batch.fake_labels, fake_features, real_features)
        loss_g.backward()
    opt_g.step()

    stats.update(loss_g=_value(loss_g), d_g_z2=_mean_sigmoid(source))
    if classes is not None:
        stats["class_acc_fake"] = _accuracy(classes, batch.fake_labels)
    return _read_back(stats)


def simultaneous_round(G, D, opt_g, opt_d, batches, g_loss="non-saturating", real_label=1.0, d_loss_scale=1.0):
    """K − 1 updates of D, then both players' gradients from one forward pass on the last batch and one update of
    both (same returns as alternating_round; D(G(z)) is seen once, so d_g_z2 = d_g_z1).

    The fakes enter D as a leaf, which splits the backward in two:
        ∂J_G/∂θ_G = ∂J_G/∂fake · ∂fake/∂θ_G     (J_G through D's current weights: D is frozen for this pass)
        ∂J_D/∂θ_D                               (backward stops at the leaf: G's graph is not walked again)
    Feature matching takes both feature sets from that same pass.
    """
    batches = _check_round(G, D, batches, g_loss)
    for batch in batches[:-1]:
        _discriminator_update(G, D, opt_d, batch, real_label, d_loss_scale)
    batch = batches[-1]

    opt_d.zero_grad()
    opt_g.zero_grad()
    fake = _generate(G, batch)
    fake_in = fake.detach().requires_grad_()
    matching = g_loss == FEATURE_MATCHING
    # one forward each; the dropout masks serve both players
    real_source, real_classes, real_features = _judge(D, batch.real, batch.real_labels, "real_labels", matching)
    fake_source, fake_classes, fake_features = _judge(D, fake_in, batch.fake_labels, "fake_labels", matching)
    loss_real = _d_objective(real_source, real_classes, real_label, batch.real_labels, "real_labels")
    loss_fake = _d_objective(fake_source, fake_classes, 0.0, batch.fake_labels, "fake_labels")
    loss_g = _g_objective(g_loss, fake_source, fake_classes, batch.fake_labels, fake_features, real_features)

    with frozen(D):  # G's objective: only the gradient at D's input is wanted, then on through G
        loss_g.backward(retain_graph=True)
    fake.backward(fake_in.grad)
    fake_in.requires_grad_(False)  # D's objective: its parameters only
    ((loss_real + loss_fake) * d_loss_scale).backward()

    opt_d.step()
    opt_g.step()
    d_g_z = _mean_sigmoid(fake_source)
    stats = {"loss_d": d_loss_scale * (_value(loss_real) + _value(loss_fake)), "loss_g": _value(loss_g),
             "d_x": _mean_sigmoid(real_source), "d_g_z1": d_g_z, "d_g_z2": d_g_z}
    if real_classes is not None:
        stats["class_acc_real"] = _accuracy(real_classes, batch.real_labels)
        stats["class_acc_fake"] = _accuracy(fake_classes, batch.fake_labels)
    return _read_back(stats)


def train_step(G, D, opt_g, opt_d, real, z, g_loss="non-saturating", real_label=1.0, d_loss_scale=1.0):
    """One D update then one G update on the same noise (alternating_round with one unconditional batch)."""
    return alternating_round(G, D, opt_g, opt_d, [Batch(real, z)], g_loss, real_label, d_loss_scale)


def simultaneous_step(G, D, opt_g, opt_d, real, z, g_loss="non-saturating", real_label=1.0, d_loss_scale=1.0):
    """Both players' gradients from one forward pass, then one update of both (simultaneous_round, one batch)."""
    return simultaneous_round(G, D, opt_g, opt_d, [Batch(real, z)], g_loss, real_label, d_loss_scale)


STEPS = {"alternating": train_step, "simultaneous": simultaneous_step}
ROUNDS = {"alternating": alternating_round, "simultaneous": simultaneous_round}
