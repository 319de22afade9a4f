"""The 64×64 DCGAN of the PyTorch DCGAN tutorial (and pytorch/examples' dcgan/main.py), ngf = ndf = 64 by default.

G: z (N,nz,1,1) → ConvT 4/1/0 → 8ngf×4×4 → BN+ReLU → ConvT 4/2/1 → 4ngf×8×8 → BN+ReLU → ConvT 4/2/1 → 2ngf×16×16
   → BN+ReLU → ConvT 4/2/1 → ngf×32×32 → BN+ReLU → ConvT 4/2/1 → nc×64×64 → tanh
D: x (N,nc,64,64) → Conv 4/2/1 → ndf×32×32 → LeakyReLU 0.2 → Conv 4/2/1 → 2ndf×16×16 → BN+LeakyReLU 0.2
   → Conv 4/2/1 → 4ndf×8×8 → BN+LeakyReLU 0.2 → Conv 4/2/1 → 8ndf×4×4 → BN+LeakyReLU 0.2 → Conv 4/1/0 → logit
No biases (batch norm's β follows every conv but the last of each player); no BN on G's output or D's input layer;
the sigmoid of D is folded into the loss (sigmoid-BCE on logits), so D returns (N, 1) logits.
"""
from .. import nn

IMAGE_SIZE = 64
DEPTH = 4  # stride-2 layers of each player: 4 → 64 pixels


def dcgan64_generator(nz=100, ngf=64, nc=3):
    widths = [ngf * 2 ** i for i in reversed(range(DEPTH))]  # 8ngf, 4ngf, 2ngf, ngf
    layers = [nn.ConvTranspose2d(nz, widths[0], 4, 1, 0, bias=False), nn.BatchNorm2d(widths[0], activation="relu")]
    for c_in, c_out in zip(widths, widths[1:]):
        layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out, activation="relu")]
    layers += [nn.ConvTranspose2d(widths[-1], nc, 4, 2, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


def dcgan64_discriminator(ndf=64, nc=3, negative_slope=0.2):
    widths = [ndf * 2 ** i for i in range(DEPTH)]  # ndf, 2ndf, 4ndf, 8ndf
    layers = [nn.Conv2d(nc, widths[0], 4, 2, 1, bias=False), nn.LeakyReLU(negative_slope)]
    for c_in, c_out in zip(widths, widths[1:]):
        layers += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False),
                   nn.BatchNorm2d(c_out, activation="leaky_relu", negative_slope=negative_slope)]
    layers += [nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False), nn.Flatten()]
    return nn.Sequential(*layers)


def dcgan64(nz=100, ngf=64, ndf=64, nc=3):
    """(G, D) for 64×64 images with nc channels (3: RGB, 1: grayscale), with the DCGAN initialisation."""
    for name, value in (("nz", nz), ("ngf", ngf), ("ndf", ndf)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"dcgan64: {name} must be a positive integer, got {value!r}")
    if nc not in (1, 3):
        raise ValueError(f"dcgan64: nc must be 1 (grayscale) or 3 (RGB), got {nc!r}")
    return (nn.init.dcgan_init(dcgan64_generator(nz, ngf, nc)),
            nn.init.dcgan_init(dcgan64_discriminator(ndf, nc)))
