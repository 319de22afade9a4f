"""A trained generator from a run folder, and samples from it as flat pixels in [0, 1]."""
import numpy as np

import fastgan
from fastgan.checkpoint import load_checkpoint
from fastgan.models import build_gan, recipe_for
from fastgan.random import isolated_rng

__all__ = ["EvalError", "load_generator", "isolated_rng", "sample_images"]


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


def sample_images(G, recipe, nz, n, seed=0, batch_size=500):
    """n samples of G as (n, 784) float64 pixels in [0, 1].

    The noise comes from fastgan's generator reseeded with `seed` (isolated_rng: the caller's stream is untouched).
    """
    was_training = G.training
    G.eval()
    chunks = []
    try:
        with isolated_rng(seed), fastgan.no_grad():
            for start in range(0, n, batch_size):
                z = recipe.sample_noise(min(batch_size, n - start), nz, G.parameters()[0].device)
                chunks.append(recipe.to_unit(G(z).numpy().astype(np.float64)).reshape(len(z.data), -1))
    finally:
        G.train(was_training)
    return np.clip(np.concatenate(chunks), 0.0, 1.0)
