"""The model registry: every model is built from a run's config, with its recipe, options and image shape."""
import pytest

import fastgan
from fastgan.models import DCGAN_RECIPE, MODELS, RECIPES, build_gan, image_shape, model_options, recipe_for
from fastgan.models.dcgan64 import dcgan64


def test_every_model_has_a_recipe_options_and_an_image_size():
    from fastgan.models import IMAGE_SIZES, MODEL_OPTIONS
    assert set(MODELS) == set(RECIPES) == set(MODEL_OPTIONS) == set(IMAGE_SIZES)
    assert MODELS["dcgan64"] is dcgan64 and RECIPES["dcgan64"] is DCGAN_RECIPE  # Adam 2e-4, β1 0.5, batch 128
    assert (DCGAN_RECIPE.lr, DCGAN_RECIPE.beta1, DCGAN_RECIPE.batch_size) == (2e-4, 0.5, 128)


@pytest.mark.parametrize("config, shape", [
    ({"model": "dcgan", "nz": 100}, (1, 28, 28)),
    ({"model": "mlp", "nz": 100}, (1, 28, 28)),
    ({"model": "dcgan64", "nz": 100}, (3, 64, 64)),                                  # an old config: the defaults
    ({"model": "dcgan64", "nz": 100, "ngf": None, "ndf": None, "nc": None}, (3, 64, 64)),
    ({"model": "dcgan64", "nz": 10, "ngf": 8, "ndf": 4, "nc": 1}, (1, 64, 64)),
])
def test_build_gan_from_a_config(config, shape):
    assert image_shape(config) == shape
    G, D = build_gan(config)
    with fastgan.no_grad():
        images = G.eval()(recipe_for(config).sample_noise(2, config["nz"]))
        assert images.shape == (2, *shape) and D.eval()(images).shape == (2, 1)
    if config["model"] == "dcgan64":
        options = model_options(config)
        assert G.parameters()[0].shape == (config["nz"], 8 * options["ngf"], 4, 4)
        assert D.parameters()[0].shape == (options["ndf"], options["nc"], 4, 4)
