"""One GAN training run on a 2-D toy mixture (ring or grid), vanilla or unrolled, into a run folder.

The recipe is that of the unrolled-GAN paper's public code (poolio/unrolled_gan, the TensorFlow notebook):
    G, D        MLPs 2 × 128 tanh, weights orthogonal × 1.4, biases 0 (fastgan/models/toy.py); z ∈ R^256 ~ N(0, I)
    optimisers  Adam, D lr 1e-4, G lr 1e-3, β1 0.5, β2 0.999, ε 1e-8; batch 512
    losses      D: BCE(D(x), 1) + BCE(D(G(z)), 0); G: the minimax cost E log(1 − D(G(z))) (the notebook's G
                maximises D's loss); both players update simultaneously from one batch
    unrolling   K = 5 steps of D's own Adam (its current moments) on a copy, on the same batch
    length      the notebook runs 25,000 iterations; here 20,000 by default (--iters)
    minibatch   optionally (minibatch = (B, C), vanilla only) D gets a minibatch-discrimination layer before its
                last layer (fastgan/models/toy.py), started from a batch of real data
What differs from the notebook: the data (its ring has radius 1, std 0.01 and, through linspace(0, 2π, 8), only 7
distinct modes; here the paper's ring: 8 modes at 2πk/8, radius 2, std 0.02) and the iteration count.

The run folder:
    config.json      the settings
    metrics.jsonl    losses and D's outputs every --log-every iterations; the mode metric at every snapshot
    snapshots.npz    `iters` (S,) and `samples` (S, 2500, 2): G's samples of one fixed noise batch at each snapshot
    state.npz        weights, Adam moments, the fixed noise and the RNG state at the end (arrays only, no pickle):
                     asking for more --iters with the same settings goes on from here, exactly
    result.json      the final mode metric (fastgan/theory/modes.py), seconds of training, ms per iteration (wall
                     clock, and CPU time of this process: on a shared machine the second is the steadier)
metrics.jsonl is a log, appended as the run goes; the other files are written atomically, result.json last, so a
folder with it holds a finished run. At every snapshot before the last, the three files are written as those of a
finished run of that many iterations: a run killed in the middle goes on from its last snapshot when asked again.
"""
import dataclasses
import json
import math
import os
import time

import numpy as np
from tqdm import tqdm

import fastgan
from fastgan import optim
from fastgan.data.toy import TOY_2D
from fastgan.gan import G_LOSSES
from fastgan.models.toy import toy_gan
from fastgan.random import generator, get_rng_state, set_rng_state
from fastgan.utils.atomic import atomic_save_npz, atomic_write

from .modes import SAMPLES, mode_coverage
from .unrolled import UNROLL_MODES, check_unroll_mode, make_look_ahead, unrolled_step

RESULT, STATE = "result.json", "state.npz"


@dataclasses.dataclass(frozen=True)
class ToyRunConfig:
    data: str = "ring"
    unroll: int = 0
    unroll_mode: str = "first-order"
    iters: int = 20000
    seed: int = 0
    batch_size: int = 512
    nz: int = 256
    hidden: int = 128
    lr_d: float = 1e-4
    lr_g: float = 1e-3
    beta1: float = 0.5
    beta2: float = 0.999
    eps: float = 1e-8
    g_loss: str = "minimax"
    snapshots: tuple = tuple(range(0, 20001, 2500))   # iterations after which G's samples are kept
    log_every: int = 100
    minibatch: tuple = ()                             # (B, C): D with minibatch discrimination; () without

    def check(self):
        """ValueError naming the bad setting; called before anything is written."""
        if self.data not in TOY_2D:
            raise ValueError(f"unknown data set {self.data!r}: expected one of {sorted(TOY_2D)}")
        if self.unroll_mode not in UNROLL_MODES:
            raise ValueError(f"unknown --unroll-mode {self.unroll_mode!r}: expected one of {UNROLL_MODES}")
        if self.g_loss not in G_LOSSES:
            raise ValueError(f"unknown --g-loss {self.g_loss!r}: expected one of {G_LOSSES}")
        for name in ("iters", "batch_size", "nz", "hidden", "log_every", "lr_d", "lr_g"):
            value = getattr(self, name)
            if value < 0 or (value == 0 and name != "iters"):
                raise ValueError(f"--{name.replace('_', '-')} must be {'≥ 0' if name == 'iters' else 'positive'}, "
                                 f"got {value}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"Adam's betas must lie in [0, 1), got {self.beta1}, {self.beta2}")
        if self.unroll < 0:
            raise ValueError(f"--unroll must be ≥ 0 (0 = vanilla GAN), got {self.unroll}")
        if self.unroll > 0:
            check_unroll_mode(self.unroll_mode)
        if self.minibatch:
            if len(self.minibatch) != 2 or any(not isinstance(v, int) or v < 1 for v in self.minibatch):
                raise ValueError(f"--minibatch-disc needs two positive integers B,C, got {list(self.minibatch)}")
            if self.unroll:
                raise ValueError("--minibatch-disc is a variant of the vanilla GAN here: use it with --unroll 0")
        if any(s < 0 or s > self.iters for s in self.snapshots):
            raise ValueError(f"snapshots must lie in [0, --iters = {self.iters}], got {list(self.snapshots)}")

    @property
    def name(self):
        """The run's folder name, e.g. ring-unroll5-first-order-seed0, ring-vanilla-seed0 or ring-mbd10x3-seed0."""
        return f"{self.data}-{self.variant}-seed{self.seed}"

    @property
    def variant(self):
        if self.minibatch:
            return "mbd{}x{}".format(*self.minibatch)
        return "vanilla" if self.unroll == 0 else f"unroll{self.unroll}-{self.unroll_mode}"

    @property
    def label(self):
        """The variant in words, as the table and the pictures name it."""
        if self.minibatch:
            return "minibatch discrimination (B = {}, C = {})".format(*self.minibatch)
        return "vanilla GAN" if self.unroll == 0 else f"unrolled GAN, K = {self.unroll} ({self.unroll_mode})"

    def as_dict(self):
        saved = {**dataclasses.asdict(self), "snapshots": sorted(set(self.snapshots) | {self.iters})}
        if not self.minibatch:         # a run without it reads as one saved before the option existed
            del saved["minibatch"]
        else:
            saved["minibatch"] = list(self.minibatch)
        return saved

    @classmethod
    def from_dict(cls, saved):
        """The config of a saved result (JSON lists back to tuples)."""
        saved = dict(saved)
        saved["snapshots"] = tuple(saved["snapshots"])
        saved["minibatch"] = tuple(saved.get("minibatch", ()))
        return cls(**saved)


def normal_noise(n, nz):
    """z ~ N(0, I) drawn directly in float32 from fastgan's generator."""
    return fastgan.Tensor(generator().standard_normal((n, nz), dtype=np.float32))


def _write_json(path, obj):
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def _saved_result(out_dir):
    try:
        with open(os.path.join(out_dir, RESULT), encoding="utf-8") as f:
            result = json.load(f)
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and isinstance(result.get("config"), dict) else None


def finished_result(out_dir, config):
    """The result of a finished run of exactly this config in out_dir, else None (so a sweep can be resumed)."""
    result = _saved_result(out_dir)
    return result if result is not None and result["config"] == config.as_dict() else None


def _same_but_longer(saved, config):
    """Is `config` the saved run's config with more iterations (and the snapshots that go with them)?"""
    wanted = config.as_dict()
    others = [k for k in wanted if k not in ("iters", "snapshots")]
    return all(saved.get(k) == wanted[k] for k in others) and saved.get("iters", math.inf) < config.iters


def extendable_result(out_dir, config):
    """The result of a shorter run of the same settings in out_dir, with its saved state, else None."""
    result = _saved_result(out_dir)
    if result is None or not os.path.exists(os.path.join(out_dir, STATE)):
        return None
    return result if _same_but_longer(result["config"], config) else None


def _save_state(path, models, optimizers, fixed_z):
    """Everything a run needs to go on exactly: weights, Adam moments and steps, the fixed noise, the RNG."""
    arrays = {"fixed_z": fixed_z.numpy(), "rng": np.array(json.dumps(get_rng_state()))}
    for name, module in models.items():
        arrays.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
    for name, opt in optimizers.items():
        for i, state in enumerate(opt.state_dict()["state"]):
            arrays.update({f"{name}.{i}.{k}": np.asarray(v) for k, v in state.items()})
    atomic_save_npz(path, **arrays)


def _load_state(path, models, optimizers):
    """Restore what _save_state wrote (no pickle); returns the fixed noise."""
    with np.load(path, allow_pickle=False) as saved:
        for name, module in models.items():
            module.load_state_dict({k: saved[f"{name}.{k}"] for k in module.state_dict()})
        for name, opt in optimizers.items():
            state = opt.state_dict()
            state["state"] = [{k: (int(saved[key]) if k == "step" else saved[key])
                               for k in ("step", "exp_avg", "exp_avg_sq") if (key := f"{name}.{i}.{k}") in saved}
                              for i in range(len(opt.params))]
            opt.load_state_dict(state)
        set_rng_state(json.loads(str(saved["rng"])))
        return fastgan.Tensor(saved["fixed_z"])


def _keep_log_until(path, first):
    """Drop the log lines of iterations from `first` on (left by an earlier attempt to go on that was cut short)."""
    kept = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue                                       # a line cut short by a killed run
            if record.get("iter", math.inf) < first or (record.get("event") == "snapshot" and record["iter"] == first):
                kept.append(line)
    with atomic_write(path, "w") as f:
        f.writelines(kept)


def train_toy_gan(config, out_dir, progress=True):
    """Train one run (config: ToyRunConfig) into out_dir; returns the result dict also written to result.json.

    If out_dir holds a finished shorter run of the same settings, it goes on from there to config.iters, with
    exactly the result an uninterrupted run of config.iters would have had.
    """
    config.check()
    fastgan.manual_seed(config.seed)
    data = TOY_2D[config.data]()
    G, D = toy_gan(config.nz, 2, config.hidden, minibatch=config.minibatch)
    opt_d = optim.Adam(D.parameters(), config.lr_d, (config.beta1, config.beta2), config.eps)
    opt_g = optim.Adam(G.parameters(), config.lr_g, (config.beta1, config.beta2), config.eps)
    look_ahead = make_look_ahead(D, opt_d, config.unroll_mode) if config.unroll else None
    fixed_z = normal_noise(SAMPLES, config.nz)
    snapshots = config.as_dict()["snapshots"]
    models, optimizers = {"G": G, "D": D}, {"opt_g": opt_g, "opt_d": opt_d}

    kept_iters, kept_samples, train_seconds, train_cpu_seconds = [], [], 0.0, 0.0
    first, earlier = 0, extendable_result(out_dir, config)
    if earlier is not None:                                    # go on from the shorter run
        fixed_z = _load_state(os.path.join(out_dir, STATE), models, optimizers)
        first = earlier["config"]["iters"]
        with np.load(os.path.join(out_dir, "snapshots.npz")) as saved:
            kept_iters, kept_samples = saved["iters"].tolist(), list(saved["samples"])
        train_seconds = earlier["train_seconds"]
        train_cpu_seconds = earlier["cpu_ms_per_iter"] * first / 1e3
        _keep_log_until(os.path.join(out_dir, "metrics.jsonl"), first)
    elif config.minibatch:                                     # D judges G's samples first: start it on real data
        D.initialise(fastgan.Tensor(data.sample(config.batch_size)))
    os.makedirs(out_dir, exist_ok=True)
    _write_json(os.path.join(out_dir, "config.json"), config.as_dict())
    with open(os.path.join(out_dir, "metrics.jsonl"), "a" if first else "w", encoding="utf-8") as log, \
            tqdm(initial=first, total=config.iters, desc=config.name, disable=not progress, mininterval=5) as bar:
        for it in range(first, config.iters + 1):
            if it in snapshots and it not in kept_iters:       # G's samples after `it` updates
                with fastgan.no_grad():
                    samples = G(fixed_z).numpy()
                kept_iters.append(it)
                kept_samples.append(samples)
                log.write(json.dumps({"iter": it, "event": "snapshot",
                                      **mode_coverage(samples, data.modes, data.std).as_dict()}) + "\n")
                log.flush()
                if first < it < config.iters:                  # as a finished run of `it` iterations
                    shorter = dataclasses.replace(config, iters=it, snapshots=tuple(kept_iters))
                    _write_run(out_dir, shorter, G, data, fixed_z, models, optimizers, kept_iters, kept_samples,
                               train_seconds, train_cpu_seconds)
            if it == config.iters:
                break
            start, start_cpu = time.perf_counter(), time.process_time()
            real = fastgan.Tensor(data.sample(config.batch_size))
            stats = unrolled_step(G, D, opt_g, opt_d, real, normal_noise(config.batch_size, config.nz),
                                  config.unroll, look_ahead, config.g_loss)
            train_seconds += time.perf_counter() - start
            train_cpu_seconds += time.process_time() - start_cpu
            if it % config.log_every == 0:
                log.write(json.dumps({"iter": it, **stats}) + "\n")
            bar.update()

    return _write_run(out_dir, config, G, data, fixed_z, models, optimizers, kept_iters, kept_samples, train_seconds,
                      train_cpu_seconds)


def _write_run(out_dir, config, G, data, fixed_z, models, optimizers, kept_iters, kept_samples, train_seconds,
               train_cpu_seconds):
    """The files of a run finished after config.iters iterations; result.json last. Returns the result."""
    with fastgan.no_grad():
        report = mode_coverage(G(fixed_z).numpy(), data.modes, data.std)   # the final samples (a snapshot too)
    atomic_save_npz(os.path.join(out_dir, "snapshots.npz"), iters=np.array(kept_iters),
                    samples=np.stack(kept_samples).astype(np.float32))
    _save_state(os.path.join(out_dir, STATE), models, optimizers, fixed_z)
    iters = max(config.iters, 1)
    result = {"config": config.as_dict(), **report.as_dict(), "train_seconds": round(train_seconds, 3),
              "ms_per_iter": round(1e3 * train_seconds / iters, 3),
              "cpu_ms_per_iter": round(1e3 * train_cpu_seconds / iters, 3)}
    _write_json(os.path.join(out_dir, RESULT), result)
    return result
