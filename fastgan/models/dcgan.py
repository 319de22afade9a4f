"""The 28×28 DCGAN (Radford et al., 2015, sized for MNIST).

G: z (N,100,1,1) → ConvT 7×7 → 256×7×7 → BN+ReLU → ConvT 4/2/1 → 128×14×14 → BN+ReLU → ConvT 4/2/1 → 1×28×28 → tanh
D: x (N,1,28,28) → Conv 4/2/1 → 64×14×14 → LeakyReLU 0.2 → Conv 4/2/1 → 128×7×7 → BN+LeakyReLU 0.2 → Conv 7×7 → logit
No BN on G's output or D's input layer; the sigmoid of D is folded into the loss (sigmoid-BCE on logits).
"""
from .. import nn


def dcgan_generator(nz=100, channels=1, width=128):
    return nn.Sequential(
        nn.ConvTranspose2d(nz, 2 * width, 7, 1, 0, bias=False),
        nn.BatchNorm2d(2 * width, activation="relu"),
        nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False),
        nn.BatchNorm2d(width, activation="relu"),
        nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False),
        nn.Tanh(),
    )


def dcgan_discriminator(channels=1, width=64, negative_slope=0.2):
    return nn.Sequential(
        nn.Conv2d(channels, width, 4, 2, 1, bias=False),
        nn.LeakyReLU(negative_slope),
        nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),
        nn.BatchNorm2d(2 * width, activation="leaky_relu", negative_slope=negative_slope),
        nn.Conv2d(2 * width, 1, 7, 1, 0, bias=False),
        nn.Flatten(),
    )


def dcgan_mnist(nz=100):
    """(G, D) for 28×28 single-channel images, with the DCGAN initialisation."""
    return nn.init.dcgan_init(dcgan_generator(nz)), nn.init.dcgan_init(dcgan_discriminator())
