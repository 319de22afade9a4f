"""GAN architectures: builders that return (generator, discriminator) Modules, and how each is trained."""
import dataclasses

from .conditional import CONDITIONAL_KINDS, NUM_CLASSES, grid_labels, random_labels
from .dcgan import VBN_REFERENCE_SIZE, dcgan_mnist
from .discriminator import Discriminator
from .mlp_gan import MLP_RECIPE, mlp_gan_mnist
from .recipe import DCGAN_RECIPE, Recipe

MODELS = {"dcgan": dcgan_mnist, "mlp": mlp_gan_mnist}
RECIPES = {"dcgan": DCGAN_RECIPE, "mlp": MLP_RECIPE}


def recipe_for(config):
    """The recipe a run was trained with: its model's, with the run's own choice of noise if it made one."""
    recipe = RECIPES[config["model"]]
    if config.get("noise"):
        recipe = dataclasses.replace(recipe, noise=config["noise"])
    return recipe


def build_gan(model, nz=100, *, vbn=False, minibatch=None, conditional=None, reference_noise=None,
              pixel_mean=None):
    """(G, D) of `model` with the toolbox's options (see models/dcgan.py). ValueError naming the option when it
    is malformed or the model does not offer it: the MLP has no batch norm to make virtual and no conditional
    variant; pixel_mean (the MLP's output-bias initialisation) is the MLP's only."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}: expected one of {sorted(MODELS)}")
    if minibatch is not None:
        pair = tuple(minibatch) if isinstance(minibatch, (tuple, list)) else ()
        if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair):
            raise ValueError(f"minibatch discrimination needs two positive integers (B, C), got {minibatch!r}")
    if conditional is not None and conditional not in CONDITIONAL_KINDS:
        raise ValueError(f"conditional must be one of {CONDITIONAL_KINDS}, got {conditional!r}")
    if model == "mlp":
        if vbn:
            raise ValueError("virtual batch norm is not available for model 'mlp': its generator has no batch norm "
                             "(use model 'dcgan')")
        if conditional:
            raise ValueError(f"conditional {conditional!r} is not available for model 'mlp' (use model 'dcgan')")
        return mlp_gan_mnist(nz, pixel_mean, minibatch)
    if pixel_mean is not None:
        raise ValueError(f"pixel_mean initialises the MLP generator's output bias; model {model!r} takes none")
    if reference_noise is not None and not vbn:
        raise ValueError("reference_noise is the virtual batch norm's reference batch: it needs vbn=True")
    return dcgan_mnist(nz, vbn=vbn, minibatch=minibatch, conditional=conditional, reference_noise=reference_noise)


__all__ = ["MODELS", "RECIPES", "Recipe", "Discriminator", "dcgan_mnist", "mlp_gan_mnist", "recipe_for",
           "build_gan", "CONDITIONAL_KINDS", "NUM_CLASSES", "VBN_REFERENCE_SIZE", "grid_labels", "random_labels"]
