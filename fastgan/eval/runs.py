"""A trained generator from a run folder, and samples from it as flat pixels in [0, 1]."""
import numpy as np

import fastgan
from fastgan.checkpoint import load_checkpoint
from fastgan.models import NUM_CLASSES, build_gan, recipe_for
from fastgan.random import isolated_rng

__all__ = ["EvalError", "load_generator", "isolated_rng", "requested_labels", "sample_images"]


class EvalError(RuntimeError):
    """The evaluation cannot run; the message says why and what to do."""


def load_generator(run_dir):
    """(G in eval mode, run config + "trained_epochs", recipe) from RUN_DIR's checkpoint.

    CheckpointError (fastgan.checkpoint) if the folder has no checkpoint, or one that is damaged, pickled by an older
    version, or not a checkpoint of a model fastgan knows with weights that fit it.
    """
    state = load_checkpoint(run_dir)
    config = state["config"]
    G, _ = build_gan(config)
    G.load_state_dict(state["G"])
    return G.eval(), {**config, "trained_epochs": state["epoch"]}, recipe_for(config)


def requested_labels(n, digit=None):
    """The classes asked of a conditional G for n samples: all `digit`, or balanced 0, 1, ..., 9, 0, 1, ..."""
    if digit is not None and not (isinstance(digit, int) and 0 <= digit < NUM_CLASSES):
        raise EvalError(f"--digit must be an integer in [0, {NUM_CLASSES}), got {digit!r}")
    return np.full(n, digit, np.int64) if digit is not None else np.arange(n, dtype=np.int64) % NUM_CLASSES


def sample_images(G, recipe, nz, n, seed=0, batch_size=500, labels=None):
    """n samples of G as (n, C·H·W) float64 pixels in [0, 1] (784 for MNIST).

    The noise comes from fastgan's generator reseeded with `seed` (isolated_rng: the caller's stream is untouched).
    A conditional G is asked for `labels` ((n,) classes; default: requested_labels(n), balanced).
    """
    takes_labels = getattr(G, "takes_labels", False)
    if not takes_labels and labels is not None:
        raise EvalError("class labels were given, but this generator is not conditional (a run without "
                        "--conditional)")
    if takes_labels:
        labels = requested_labels(n) if labels is None else np.asarray(labels)
        if labels.shape != (n,):
            raise EvalError(f"expected one class label per sample ({n}), got shape {labels.shape}")
    was_training = G.training
    G.eval()
    chunks = []
    try:
        with isolated_rng(seed), fastgan.no_grad():
            for start in range(0, n, batch_size):
                device = G.parameters()[0].device
                z = recipe.sample_noise(min(batch_size, n - start), nz, device)
                out = G(z, fastgan.tensor(labels[start:start + len(z.data)], device=device)) if takes_labels else G(z)
                chunks.append(recipe.to_unit(out.numpy().astype(np.float64)).reshape(len(z.data), -1))
    finally:
        G.train(was_training)
    return np.clip(np.concatenate(chunks), 0.0, 1.0)
