"""GAN architectures: builders that return (generator, discriminator) Modules, and how each is trained."""
import dataclasses

from .dcgan import dcgan_mnist
from .dcgan64 import dcgan64
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
    """(G, D) of a run's config: its model, with its nz and architecture options; `extra` goes to the builder."""
    return MODELS[config["model"]](config["nz"], **model_options(config), **extra)


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


__all__ = ["IMAGE_SIZES", "MODELS", "MODEL_OPTIONS", "RECIPES", "Recipe", "build_gan", "dcgan64", "dcgan_mnist",
           "image_shape", "mlp_gan_mnist", "model_options", "recipe_for"]
