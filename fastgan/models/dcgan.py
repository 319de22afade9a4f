"""The 28×28 DCGAN (Radford et al., 2015, sized for MNIST).

G: z (N,100,1,1) → ConvT 7×7 → 256×7×7 → BN+ReLU → ConvT 4/2/1 → 128×14×14 → BN+ReLU → ConvT 4/2/1 → 1×28×28 → tanh
D: x (N,1,28,28) → Conv 4/2/1 → 64×14×14 → LeakyReLU 0.2 → Conv 4/2/1 → 128×7×7 → BN+LeakyReLU 0.2 → Conv 7×7 → logit
No BN on G's output or D's input layer; the sigmoid of D is folded into the loss (sigmoid-BCE on logits).

D's features (feature matching, projection) are the output of its BN+LeakyReLU block: 128×7×7 per image.
Options of the GAN tutorial's toolbox:
  vbn=True           G's batch norms become VirtualBatchNorm2d (+ ReLU), with a fixed reference batch of noise
                     (models/vbn_generator.py); D keeps batch norm.
  minibatch=(B, C)   D's head becomes flatten → MinibatchDiscrimination(6272, B, C) → Linear(6272 + B, outputs)
                     (the 7×7 convolution on a 7×7 map is that Linear without the extra B features).
  conditional        "cgan" (one-hot class appended to z and as 10 planes of D's input), "projection" (the class
                     embedding projected onto D's features), "acgan" (D outputs 1 + 10 logits): models/conditional.py.
"""
from .. import nn
from ..random import randn
from .conditional import (CONDITIONAL_KINDS, NUM_CLASSES, ConditionalGenerator, LabelPlanesDiscriminator,
                          ProjectionDiscriminator, reference_labels)
from .discriminator import Discriminator
from .vbn_generator import VirtualBatchNormGenerator, reference_input

VBN_REFERENCE_SIZE = 64  # examples in the reference batch of a VBN generator (one more forward pass of this size)


def dcgan_generator(nz=100, channels=1, width=128, norm="batch"):
    """norm: "batch" (BatchNorm2d with the ReLU fused) or "virtual" (VirtualBatchNorm2d, then ReLU)."""
    if norm not in ("batch", "virtual"):
        raise ValueError(f"dcgan_generator: norm must be 'batch' or 'virtual', got {norm!r}")

    def norm_relu(features):
        if norm == "batch":
            return [nn.BatchNorm2d(features, activation="relu")]
        return [nn.VirtualBatchNorm2d(features), nn.ReLU()]

    return nn.Sequential(
        nn.ConvTranspose2d(nz, 2 * width, 7, 1, 0, bias=False),
        *norm_relu(2 * width),
        nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False),
        *norm_relu(width),
        nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False),
        nn.Tanh(),
    )


def dcgan_discriminator(channels=1, width=64, negative_slope=0.2, class_outputs=0, minibatch=None):
    """class_outputs: class logits after the source logit (AC-GAN: 10); minibatch: None or (B, C)."""
    outputs = 1 + class_outputs
    features = [
        nn.Conv2d(channels, width, 4, 2, 1, bias=False),
        nn.LeakyReLU(negative_slope),
        nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),
        nn.BatchNorm2d(2 * width, activation="leaky_relu", negative_slope=negative_slope),
    ]
    if minibatch is None:
        head = [nn.Conv2d(2 * width, outputs, 7, 1, 0, bias=False), nn.Flatten()]
    else:
        b, c = minibatch
        last = nn.Linear(2 * width * 7 * 7 + b, outputs, bias=False)
        nn.init.normal_(last.weight, 0.0, 0.02)  # as the convolution it replaces
        head = [nn.Flatten(), nn.MinibatchDiscrimination(2 * width * 7 * 7, b, c), last]
    return Discriminator(*features, *head, feature_layers=len(features), class_outputs=class_outputs)


def dcgan_mnist(nz=100, vbn=False, minibatch=None, conditional=None, reference_noise=None):
    """(G, D) for 28×28 single-channel images, with the DCGAN initialisation, and the toolbox options above.

    reference_noise: the VBN reference batch of noise, (R, nz, 1, 1); by default R = VBN_REFERENCE_SIZE normal
    draws, taken after the weights. Without options, the same modules and random draws as always.
    """
    if conditional not in (None,) + CONDITIONAL_KINDS:
        raise ValueError(f"dcgan_mnist: conditional must be one of {CONDITIONAL_KINDS} or None, got {conditional!r}")
    labels_in = NUM_CLASSES if conditional else 0
    G = nn.init.dcgan_init(dcgan_generator(nz + labels_in, norm="virtual" if vbn else "batch"))
    if conditional in (None, "acgan"):
        D = dcgan_discriminator(class_outputs=NUM_CLASSES if conditional else 0, minibatch=minibatch)
    elif conditional == "cgan":
        D = LabelPlanesDiscriminator(dcgan_discriminator(1 + NUM_CLASSES, minibatch=minibatch))
    else:
        D = ProjectionDiscriminator(dcgan_discriminator(minibatch=minibatch), feature_size=128 * 7 * 7)
    D = nn.init.dcgan_init(D)
    if vbn:
        if reference_noise is None:
            reference_noise = randn(VBN_REFERENCE_SIZE, nz, 1, 1)
        labels = reference_labels(len(reference_noise)) if conditional else None
        G = VirtualBatchNormGenerator(G, reference_input(reference_noise, labels))
    if conditional:
        G = ConditionalGenerator(G)
    return G, D
