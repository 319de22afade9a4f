"""GAN architectures: builders that return (generator, discriminator) Modules."""
from .dcgan import dcgan_mnist

MODELS = {"dcgan": dcgan_mnist}
