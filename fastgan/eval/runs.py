"""A trained generator from a run folder, and samples from it as flat pixels in [0, 1]."""
import contextlib

import numpy as np

import fastgan
from fastgan.models import MODELS, recipe_for


class EvalError(RuntimeError):
    """The evaluation cannot run; the message says why and what to do."""


def load_generator(run_dir):
    """(G in eval mode, run config + "trained_epochs", recipe) from RUN_DIR/checkpoint.pkl.

    EvalError if the folder has no readable checkpoint, or its checkpoint is not a GAN run of a model fastgan knows,
    or the weights do not fit the model the checkpoint names.
    """
    from fastgan.train import TrainingError, load_checkpoint  # the run-folder format is train.py's

    try:
        state = load_checkpoint(run_dir)
    except TrainingError as err:
        raise EvalError(f"{err}. Evaluate a folder written by python -m fastgan.train (it needs checkpoint.pkl)") \
            from None
    config = state["config"]
    model = config.get("model") if isinstance(config, dict) else None
    if model not in MODELS or "G" not in state:
        raise EvalError(f"the checkpoint in {run_dir!r} is not a fastgan GAN run of a known model (model "
                        f"{model!r}; known: {sorted(MODELS)})")
    G, _ = MODELS[model](config["nz"])
    try:
        G.load_state_dict(state["G"])
    except (KeyError, ValueError) as err:
        raise EvalError(f"the generator weights in {run_dir!r} do not fit model {model!r} (nz = {config['nz']}): "
                        f"the checkpoint was written by another model or version ({err})") from None
    return G.eval(), {**config, "trained_epochs": state["epoch"]}, recipe_for(config)


@contextlib.contextmanager
def isolated_rng(seed=0):
    """Within this block fastgan's global generator is seeded with `seed`; the caller's state is restored after.

    Evaluating in the middle of training (drawing noise, even building a Module, whose initialisation draws
    numbers) must not move the training run's random stream, or resume would no longer be exact.
    """
    saved = fastgan.get_rng_state()
    fastgan.manual_seed(seed)
    try:
        yield
    finally:
        fastgan.set_rng_state(saved)


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
