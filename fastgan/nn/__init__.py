"""Neural-network building blocks: Module, layers, losses and initialisation."""
from . import init
from .layers import (BatchNorm1d, BatchNorm2d, Conv2d, ConvTranspose2d, Dropout, Flatten, LeakyReLU, Linear,
                     Maxout, ReLU, Sigmoid, Tanh, Unflatten)
from .losses import BCELoss, BCEWithLogitsLoss
from .gan_layers import MinibatchDiscrimination, VirtualBatchNorm2d, forget_reference, reference_pass
from .module import Module, Parameter, Sequential

__all__ = ["Module", "Parameter", "Sequential", "Linear", "Conv2d", "ConvTranspose2d", "BatchNorm1d",
           "BatchNorm2d", "ReLU", "LeakyReLU", "Tanh", "Sigmoid", "Dropout", "Maxout", "Flatten", "Unflatten",
           "BCELoss", "BCEWithLogitsLoss", "MinibatchDiscrimination", "VirtualBatchNorm2d", "reference_pass",
           "forget_reference", "init"]
