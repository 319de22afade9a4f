"""A discriminator in two parts, so that its intermediate features come out of the same forward pass as its verdict.

    features(x) = the first `feature_layers` modules      (what feature matching compares, and a projection
    head(f)     = the remaining modules                     discriminator projects the class embedding onto)
    D(x) = head(features(x));   D(x, return_features=True) = (D(x), features(x)) from one pass

It is a Sequential, so parameter names (and checkpoints) are those of the plain Sequential it replaces.
`class_outputs` > 0 marks an AC-GAN discriminator: its last layer gives 1 source logit followed by class_outputs
class logits. `takes_labels` marks a discriminator that is told the class (models/conditional.py).
"""
from .. import nn


class Discriminator(nn.Sequential):
    takes_labels = False

    def __init__(self, *modules, feature_layers, class_outputs=0):
        super().__init__(*modules)
        if not 0 < feature_layers < len(modules):
            raise ValueError(f"Discriminator: feature_layers must split the {len(modules)} modules in two non-empty "
                             f"parts, got {feature_layers}")
        self.feature_layers, self.class_outputs = feature_layers, class_outputs

    def features(self, x):
        for module in self[:self.feature_layers]:
            x = module(x)
        return x

    def head(self, features):
        for module in self[self.feature_layers:]:
            features = module(features)
        return features

    def forward(self, x, return_features=False):
        features = self.features(x)
        out = self.head(features)
        return (out, features) if return_features else out

    def extra_repr(self):
        classes = f", class_outputs={self.class_outputs}" if self.class_outputs else ""
        return f"feature_layers={self.feature_layers}{classes}"
