"""The GAN theorem in 1-D, numerically: D trained against a G of known density reaches D* = p_data/(p_data + p_g),
and the value of the game there is C(G) = −log 4 + 2·JSD(p_data ‖ p_g).

For a fixed G, V(D, G) = ∫ p_data(x) log D(x) + p_g(x) log(1 − D(x)) dx is maximised pointwise: a log y + b log(1 − y)
peaks at y = a/(a + b). Substituting D* and writing m = (p_data + p_g)/2:
    V(D*, G) = KL(p_data ‖ m) + KL(p_g ‖ m) − log 4 = −log 4 + 2·JSD(p_data ‖ p_g),
which is −log 4 (with D* = ½ everywhere) exactly when p_g = p_data.

Here every integral is a trapezoid rule on a fine grid, never a sample average: V(D, G) of the trained network, the
JSD of the two densities. D is a small tanh MLP trained with Adam on fresh samples of both densities; G is either
fixed or the affine G(z) = loc + scale·z, whose density N(loc, scale²) is known at every step.
"""
import dataclasses

import numpy as np

import fastgan
from fastgan import functional as F
from fastgan import optim
from fastgan.data.toy import Mixture1D, gaussian_1d
from fastgan.gan import frozen, generator_loss
from fastgan.models.toy import AffineGenerator1D, ToyMLP
from fastgan.random import generator

LOG4 = float(np.log(4.0))
SUPPORT = 0.01   # D is compared with D* where ½(p_data + p_g) ≥ SUPPORT × its peak (D* is 0/0 far out in the tails)


@dataclasses.dataclass
class OptimalDConfig:
    data_loc: float = 2.0          # p_data = N(data_loc, data_scale²)
    data_scale: float = 0.5
    g_loc: float = 0.0             # the fixed p_g = N(g_loc, g_scale²), and the learned G's start
    g_scale: float = 1.0
    hidden: int = 32
    batch_size: int = 512
    lr_d: float = 2e-3
    d_steps: int = 2000            # D's steps against a fixed G (the last quarter at a tenth of the lr)
    g_steps: int = 400             # G's steps in the learning run
    d_steps_per_g: int = 10        # D's steps before each of G's (D kept near D*, as the theorem assumes)
    lr_g: float = 1e-2
    g_loss: str = "non-saturating"
    seed: int = 0


def quadrature_grid(*densities, points=2001, width=8.0):
    """A grid covering every density's mass: from the lowest mean − width·std to the highest mean + width·std."""
    lo = min(float(np.min(d.means - width * d.stds)) for d in densities)
    hi = max(float(np.max(d.means + width * d.stds)) for d in densities)
    return np.linspace(lo, hi, points)


def optimal_discriminator(p_data, p_g, x):
    """D*(x) = p_data/(p_data + p_g), ½ where both densities vanish."""
    a, b = p_data.pdf(x), p_g.pdf(x)
    total = a + b
    return np.divide(a, total, out=np.full_like(total, 0.5), where=total > 0)


def integrate(y, x):
    """The trapezoid rule (np.trapezoid is NumPy ≥ 2 only)."""
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))


def _kl_to(p, m, x):
    """∫ p log(p/m) dx, with 0·log 0 = 0."""
    integrand = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(np.where(m > 0, m, 1.0))), 0.0)
    return integrate(integrand, x)


def jensen_shannon(p_data, p_g, x):
    """JSD(p_data ‖ p_g) = ½ KL(p_data ‖ m) + ½ KL(p_g ‖ m), m = ½(p_data + p_g), by quadrature on x (in nats)."""
    a, b = p_data.pdf(x), p_g.pdf(x)
    m = 0.5 * (a + b)
    return 0.5 * _kl_to(a, m, x) + 0.5 * _kl_to(b, m, x)


def value_of_game(logits, p_data, p_g, x):
    """V(D, G) = ∫ p_data log D + p_g log(1 − D) by quadrature, D = σ(logits) given on the grid x.
    log σ(s) = −softplus(−s) and log(1 − σ(s)) = −softplus(s), exact for any logit."""
    s = np.asarray(logits, dtype=np.float64)
    return integrate(-p_data.pdf(x) * np.logaddexp(0, -s) - p_g.pdf(x) * np.logaddexp(0, s), x)


def d_logits_on(D, x):
    with fastgan.no_grad():
        return D(fastgan.tensor(np.asarray(x, dtype=np.float32)[:, None])).numpy()[:, 0].astype(np.float64)


def support_mask(p_data, p_g, x):
    mix = 0.5 * (p_data.pdf(x) + p_g.pdf(x))
    return mix >= SUPPORT * mix.max()


def sigmoid(s):
    return 0.5 * (1 + np.tanh(0.5 * np.asarray(s, dtype=np.float64)))


def discriminator_step(D, opt_d, p_data, fake, batch_size):
    """One Adam step of D on BCE(D(x), 1) + BCE(D(fake), 0), x drawn from p_data; fake is a (N, 1) Tensor."""
    real = fastgan.tensor(p_data.sample(batch_size)[:, None])
    opt_d.zero_grad()
    loss = F.binary_cross_entropy_with_logits(D(real), 1.0) + F.binary_cross_entropy_with_logits(D(fake), 0.0)
    loss.backward()
    opt_d.step()
    return loss.item()


def new_discriminator(config):
    D = ToyMLP(1, 1, config.hidden, gain=1.0)
    return D, optim.Adam(D.parameters(), config.lr_d, (0.5, 0.999))


def train_against_fixed(config, p_data, p_g):
    """D trained for config.d_steps against the fixed density p_g; the last quarter of the steps at lr/10, so D
    settles instead of jittering with the minibatch noise. Returns D."""
    D, opt_d = new_discriminator(config)
    for step in range(config.d_steps):
        if step == (3 * config.d_steps) // 4:
            opt_d.lr = config.lr_d / 10
        fake = fastgan.tensor(p_g.sample(config.batch_size)[:, None])
        discriminator_step(D, opt_d, p_data, fake, config.batch_size)
    return D


def compare_with_theory(D, p_data, p_g, x):
    """D on the grid beside D*, and V(D, G) beside C(G) = −log 4 + 2·JSD."""
    logits = d_logits_on(D, x)
    d_star = optimal_discriminator(p_data, p_g, x)
    mask = support_mask(p_data, p_g, x)
    jsd = jensen_shannon(p_data, p_g, x)
    return {"x": x, "d": sigmoid(logits), "d_star": d_star, "support": mask,
            "max_abs_d_error": float(np.max(np.abs(sigmoid(logits) - d_star)[mask])),
            "value": value_of_game(logits, p_data, p_g, x), "jsd": jsd, "c_of_g": -LOG4 + 2 * jsd}


def fixed_g_experiment(config):
    """D against a fixed p_g ≠ p_data, and against p_g = p_data (where D* = ½ and C(G) = −log 4)."""
    fastgan.manual_seed(config.seed)
    p_data, p_g = gaussian_1d(config.data_loc, config.data_scale), gaussian_1d(config.g_loc, config.g_scale)
    x = quadrature_grid(p_data, p_g)
    different = compare_with_theory(train_against_fixed(config, p_data, p_g), p_data, p_g, x)
    same = compare_with_theory(train_against_fixed(config, p_data, p_data), p_data, p_data, x)
    return {"p_data": p_data, "p_g": p_g, "different": different, "same": same}


def learning_experiment(config, snapshots=(0, 50, 150, None)):
    """G = loc + scale·z learns against D (d_steps_per_g D steps before each G step). Returns the curves of V(D, G),
    C(G) and max |D − D*| at every G step, and D, D*, p_g on the grid at the `snapshots` (None = the last step)."""
    fastgan.manual_seed(config.seed)
    p_data = gaussian_1d(config.data_loc, config.data_scale)
    G = AffineGenerator1D(config.g_loc, config.g_scale)
    opt_g = optim.Adam(G.parameters(), config.lr_g, (0.5, 0.999))
    D, opt_d = new_discriminator(config)
    x = quadrature_grid(p_data, Mixture1D([config.g_loc], [config.g_scale]))
    wanted = {config.g_steps if s is None else s for s in snapshots}
    curves = {"g_step": [], "value": [], "c_of_g": [], "max_abs_d_error": [], "loc": [], "scale": []}
    frames = []
    for g_step in range(config.g_steps + 1):
        for _ in range(config.d_steps_per_g):
            with fastgan.no_grad():
                fake = G(fastgan.Tensor(generator().standard_normal((config.batch_size, 1), dtype=np.float32)))
            discriminator_step(D, opt_d, p_data, fake, config.batch_size)
        p_g = G.density()
        now = compare_with_theory(D, p_data, p_g, x)
        for key, value in (("g_step", g_step), ("value", now["value"]), ("c_of_g", now["c_of_g"]),
                           ("max_abs_d_error", now["max_abs_d_error"]), ("loc", G.loc.item()),
                           ("scale", abs(G.scale.item()))):
            curves[key].append(value)
        if g_step in wanted:
            frames.append({"g_step": g_step, "p_g": p_g.pdf(x), **now})
        if g_step == config.g_steps:
            break
        opt_g.zero_grad()
        z = fastgan.Tensor(generator().standard_normal((config.batch_size, 1), dtype=np.float32))
        with frozen(D):
            generator_loss(D(G(z)), config.g_loss).backward()
        opt_g.step()
    return {"p_data": p_data, "x": x, "curves": curves, "frames": frames}
