"""GAN architectures: builders that return (generator, discriminator) Modules, and how each is trained."""
import dataclasses

from .dcgan import dcgan_mnist
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


__all__ = ["MODELS", "RECIPES", "Recipe", "dcgan_mnist", "mlp_gan_mnist", "recipe_for"]
