"""GAN architectures: builders that return (generator, discriminator) Modules, and how each is trained."""
import dataclasses

from .conditional import CONDITIONAL_KINDS, NUM_CLASSES, grid_labels, random_labels
from .dcgan import VBN_REFERENCE_SIZE, dcgan_mnist
from .dcgan64 import dcgan64
from .discriminator import Discriminator
from .mlp_gan import MLP_RECIPE, mlp_gan_mnist
from .recipe import DCGAN_RECIPE, Recipe

MODELS = {"dcgan": dcgan_mnist, "dcgan64": dcgan64, "mlp": mlp_gan_mnist}
RECIPES = {"dcgan": DCGAN_RECIPE, "dcgan64": DCGAN_RECIPE, "mlp": MLP_RECIPE}
# The builder's own keyword options beyond nz, each with its default: a run's config carries them (None or
# missing: the default), so that a checkpoint rebuilds exactly the architecture it was trained with.
MODEL_OPTIONS = {"dcgan": {}, "dcgan64": {"ngf": 64, "ndf": 64, "nc": 3}, "mlp": {}}
IMAGE_SIZES = {"dcgan": 28, "dcgan64": 64, "mlp": 28}  # the side of the square images each G draws


def model_options(config):
    """The architecture options of a run's model, from its config (the builder's defaults where it has none)."""
    defaults = MODEL_OPTIONS[config["model"]]
    return {key: default if config.get(key) is None else config[key] for key, default in defaults.items()}


def build_gan(config, **extra):
    """(G, D) of a run's config: its model, with its nz, architecture options and toolbox options (vbn,
    minibatch_disc, conditional; absent: off); `extra` (reference_noise, pixel_mean) goes to make_gan."""
    toolbox = dict(vbn=bool(config.get("vbn")), minibatch=config.get("minibatch_disc"),
                   conditional=config.get("conditional"))
    return make_gan(config["model"], config["nz"], **toolbox, **model_options(config), **extra)


def image_shape(config):
    """(channels, height, width) of the images the run's G draws and its D judges."""
    size = IMAGE_SIZES[config["model"]]
    return model_options(config).get("nc", 1), size, size


def recipe_for(config):
    """The recipe a run was trained with: its model's, with the run's own choice of noise if it made one."""
    recipe = RECIPES[config["model"]]
    if config.get("noise"):
        recipe = dataclasses.replace(recipe, noise=config["noise"])
    return recipe


def make_gan(model, nz=100, *, vbn=False, minibatch=None, conditional=None, reference_noise=None,
             pixel_mean=None, **architecture):
    """(G, D) of `model` with the toolbox's options (see models/dcgan.py) and its architecture options
    (MODEL_OPTIONS). ValueError naming the option when it is malformed or the model does not offer it: the MLP
    has no batch norm to make virtual and no conditional variant; pixel_mean (the MLP's output-bias
    initialisation) is the MLP's only; the toolbox's options are the 28×28 models' only."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}: expected one of {sorted(MODELS)}")
    if minibatch is not None:
        pair = tuple(minibatch) if isinstance(minibatch, (tuple, list)) else ()
        if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair):
            raise ValueError(f"minibatch discrimination needs two positive integers (B, C), got {minibatch!r}")
    if conditional is not None and conditional not in CONDITIONAL_KINDS:
        raise ValueError(f"conditional must be one of {CONDITIONAL_KINDS}, got {conditional!r}")
    unknown = sorted(set(architecture) - set(MODEL_OPTIONS[model]))
    if unknown:
        raise ValueError(f"model {model!r} has no option {', '.join(unknown)}")
    if model == "dcgan64":
        used = [name for name, on in (("vbn", vbn), ("minibatch", minibatch), ("conditional", conditional),
                                      ("reference_noise", reference_noise is not None),
                                      ("pixel_mean", pixel_mean is not None)) if on]
        if used:
            raise ValueError(f"model 'dcgan64' does not offer {', '.join(used)} (use model 'dcgan')")
        return dcgan64(nz, **architecture)
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


__all__ = ["CONDITIONAL_KINDS", "IMAGE_SIZES", "MODELS", "MODEL_OPTIONS", "NUM_CLASSES", "RECIPES",
           "VBN_REFERENCE_SIZE", "Discriminator", "Recipe", "build_gan", "dcgan64", "dcgan_mnist", "grid_labels",
           "image_shape", "make_gan", "mlp_gan_mnist", "model_options", "random_labels", "recipe_for"]
