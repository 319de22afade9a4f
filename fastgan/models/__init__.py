"""GAN architectures: builders that return (generator, discriminator) Modules, and how each is trained."""
from .dcgan import dcgan_mnist
from .mlp_gan import MLP_RECIPE, mlp_gan_mnist
from .recipe import DCGAN_RECIPE, Recipe

MODELS = {"dcgan": dcgan_mnist, "mlp": mlp_gan_mnist}
RECIPES = {"dcgan": DCGAN_RECIPE, "mlp": MLP_RECIPE}

__all__ = ["MODELS", "RECIPES", "Recipe", "dcgan_mnist", "mlp_gan_mnist"]
