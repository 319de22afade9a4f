"""The toolbox's model variants (models/): shapes of conditional G and D, the one-hot handling, refused labels, D's
features from the same pass as its verdict, the VBN generator's saved reference batch, and which options each
model offers."""
import numpy as np
import pytest

import fastgan
from fastgan.models import make_gan, grid_labels, random_labels
from fastgan.models.conditional import check_labels, one_hot, reference_labels

N = 3


def sample(G, D, labels=None):
    z = fastgan.randn(N, 100, 1, 1)
    labels = random_labels(N) if labels is None else labels
    x = G(z, labels) if getattr(G, "takes_labels", False) else G(z)
    return x, (D(x, labels, return_features=True) if getattr(D, "takes_labels", False)
               else D(x, return_features=True))


@pytest.mark.parametrize("options, logits", [
    ({}, 1), ({"vbn": True}, 1), ({"minibatch": (20, 3)}, 1), ({"conditional": "cgan"}, 1),
    ({"conditional": "projection", "minibatch": (20, 3)}, 1), ({"conditional": "acgan"}, 11),
    ({"conditional": "acgan", "vbn": True, "minibatch": (20, 3)}, 11), ({"conditional": "cgan", "vbn": True}, 1)])
def test_dcgan_variants_shapes(options, logits):
    fastgan.manual_seed(0)
    G, D = make_gan("dcgan", **options)
    assert getattr(G, "takes_labels", False) == ("conditional" in options)
    x, (out, features) = sample(G, D)
    assert x.shape == (N, 1, 28, 28) and out.shape == (N, logits) and features.shape == (N, 128, 7, 7)
    labels = random_labels(N)
    if getattr(D, "takes_labels", False):  # one forward gives what features + head give
        once = D(x, labels).numpy()
        np.testing.assert_allclose(D.head(D.features(x, labels), labels).numpy(), once, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_allclose(D.head(D.features(x)).numpy(), D(x).numpy(), rtol=1e-5, atol=1e-6)


def test_mlp_with_minibatch_discrimination():
    fastgan.manual_seed(0)
    G, D = make_gan("mlp", minibatch=(30, 4))
    D.eval()  # no dropout: two passes see the same network
    x = G(fastgan.uniform(N, 100, low=-1, high=1))
    out, features = D(x, return_features=True)
    assert out.shape == (N, 1) and features.shape == (N, 240)
    np.testing.assert_allclose(D.head(features).numpy(), out.numpy(), rtol=1e-6)


def test_default_models_keep_their_names_and_random_draws():
    """Without options: the same parameter names (old checkpoints load) and the same initial weights."""
    fastgan.manual_seed(0)
    G, D = make_gan("dcgan")
    assert list(D.state_dict()) == ["0.weight", "2.weight", "3.weight", "3.bias", "4.weight", "3.running_mean",
                                    "3.running_var"]
    assert list(G.state_dict())[:2] == ["0.weight", "1.weight"]
    from fastgan.models.dcgan import dcgan_discriminator, dcgan_generator
    fastgan.manual_seed(0)
    G0 = fastgan.nn.init.dcgan_init(dcgan_generator())
    D0 = fastgan.nn.init.dcgan_init(dcgan_discriminator())
    for a, b in zip(G.parameters() + D.parameters(), G0.parameters() + D0.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    _, D = make_gan("mlp")
    assert list(D.state_dict())[:2] == ["2.linear.weight", "2.linear.bias"]


def test_one_hot_reaches_g_and_d():
    fastgan.manual_seed(0)
    G, D = make_gan("dcgan", conditional="cgan")
    labels = fastgan.tensor(np.array([3, 0, 9]))
    z = fastgan.randn(N, 100, 1, 1)
    # G sees [z, onehot(y)] as 110 input channels
    code = np.eye(10, dtype=np.float32)[[3, 0, 9]][:, :, None, None]
    G.eval()
    expected = G.net(fastgan.tensor(np.concatenate([z.numpy(), code], axis=1))).numpy()
    np.testing.assert_allclose(G(z, labels).numpy(), expected, rtol=1e-6)
    # D sees x and ten planes: plane y all ones, the others zero
    x = fastgan.randn(N, 1, 28, 28)
    planes = D._with_planes(x, labels).numpy()
    assert planes.shape == (N, 11, 28, 28)
    np.testing.assert_array_equal(planes[:, :1], x.numpy())
    np.testing.assert_array_equal(planes[:, 1:], np.broadcast_to(code, (N, 10, 28, 28)))
    # different labels, different verdicts on the same image
    D.eval()
    assert not np.allclose(D(x, labels).numpy(), D(x, fastgan.tensor(np.array([4, 4, 4]))).numpy())


def test_projection_adds_the_class_embedding_projected_on_the_features():
    fastgan.manual_seed(0)
    _, D = make_gan("dcgan", conditional="projection")
    D.eval()
    x, labels = fastgan.randn(N, 1, 28, 28), np.array([1, 7, 7])
    features = D.features(x).numpy().reshape(N, -1)
    expected = D.body.head(D.features(x)).numpy()[:, 0] + (features * D.embed.numpy()[labels]).sum(1)
    np.testing.assert_allclose(D(x, labels).numpy()[:, 0], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("labels, error, match", [
    (np.array([0.0, 1.0, 2.0]), TypeError, r"ConditionalGenerator: class labels must be integers, got dtype float64"),
    (np.array([0, 1, 10]), ValueError, r"must lie in \[0, 10\), got values from 0 to 10"),
    (np.array([-1, 1, 2]), ValueError, r"must lie in \[0, 10\), got values from -1 to 2"),
    (np.array([[0], [1], [2]]), ValueError, r"one class label per image, shape \(3,\), got shape \(3, 1\)"),
    (np.array([0, 1]), ValueError, r"one class label per image, shape \(3,\), got shape \(2,\)"),
    (np.array([True, False, True]), TypeError, r"must be integers, got dtype bool")])
def test_bad_labels_are_refused_with_a_message_naming_them(labels, error, match):
    fastgan.manual_seed(0)
    G, D = make_gan("dcgan", conditional="cgan")
    with pytest.raises(error, match=match):
        G(fastgan.randn(N, 100, 1, 1), labels)
    with pytest.raises(error, match=match.replace("ConditionalGenerator", "LabelPlanesDiscriminator")):
        D(fastgan.randn(N, 1, 28, 28), labels)


def test_label_helpers():
    np.testing.assert_array_equal(grid_labels(3).numpy()[:7], [0, 0, 0, 1, 1, 1, 2])
    assert grid_labels(8).shape == (80,)
    np.testing.assert_array_equal(reference_labels(12).numpy(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1])
    fastgan.manual_seed(5)
    first = random_labels(1000).numpy()
    fastgan.manual_seed(5)
    np.testing.assert_array_equal(random_labels(1000).numpy(), first)
    assert first.dtype.kind == "i" and set(first) == set(range(10))
    np.testing.assert_array_equal(one_hot(np.array([2]), fastgan.zeros(1, 4)).numpy(), np.eye(10)[[2]])
    assert check_labels(fastgan.tensor(np.array([1, 2], dtype=np.uint8)), 2).dtype == np.uint8  # MNIST's dtype


def test_vbn_generator_saves_its_reference_batch():
    fastgan.manual_seed(0)
    G, _ = make_gan("dcgan", vbn=True)
    state = G.state_dict()
    assert state["reference_input"].shape == (64, 100, 1, 1)
    fastgan.manual_seed(1)  # another run's draws: loading the state makes it the same generator
    other, _ = make_gan("dcgan", vbn=True)
    other.load_state_dict(state)
    z = fastgan.randn(2, 100, 1, 1)
    np.testing.assert_array_equal(other(z).numpy(), G(z).numpy())
    reference = fastgan.randn(16, 100, 1, 1)
    G, _ = make_gan("dcgan", vbn=True, conditional="acgan", reference_noise=reference)
    assert G.state_dict()["net.reference_input"].shape == (16, 110, 1, 1)  # noise + balanced one-hot labels
    np.testing.assert_array_equal(G.net.reference_input.numpy()[:, :100], reference.numpy())
    np.testing.assert_array_equal(G.net.reference_input.numpy()[:, 100:, 0, 0].argmax(1), np.arange(16) % 10)


@pytest.mark.parametrize("model, options, match", [
    ("mlp", {"vbn": True}, "virtual batch norm is not available for model 'mlp'"),
    ("mlp", {"conditional": "cgan"}, "conditional 'cgan' is not available for model 'mlp'"),
    ("dcgan", {"conditional": "infogan"}, r"conditional must be one of \('cgan', 'projection', 'acgan'\)"),
    ("dcgan", {"minibatch": (100,)}, r"two positive integers \(B, C\), got \(100,\)"),
    ("dcgan", {"minibatch": (100, 0)}, r"two positive integers \(B, C\), got \(100, 0\)"),
    ("dcgan", {"pixel_mean": np.zeros(784)}, "pixel_mean initialises the MLP generator"),
    ("dcgan", {"reference_noise": fastgan.zeros(4, 100, 1, 1)}, "it needs vbn=True"),
    ("resnet", {}, "unknown model 'resnet'")])
def test_options_a_model_does_not_offer_are_refused(model, options, match):
    with pytest.raises(ValueError, match=match):
        make_gan(model, **options)
