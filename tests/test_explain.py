"""fer_utils.explain on tiny hand-built models whose right answers are known."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest
from keras import layers

from fer_utils import explain
from fer_utils.data import CLASSES, IMAGE_SIZE

SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 1)


def region_model(box, seed=0):
    """A small CNN whose class scores see only the pixels inside `box` (top, bottom, left, right)."""
    keras.utils.set_random_seed(seed)
    top, bottom, left, right = box
    inputs = keras.Input(SHAPE)
    x = layers.Conv2D(4, 1, activation="tanh", name="conv")(inputs)
    x = layers.Cropping2D(((top, IMAGE_SIZE - bottom), (left, IMAGE_SIZE - right)))(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(3, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs)


def blob_model():
    """Positive 3x3 filters, global average pooling and a dense layer that rewards class 0 for brightness."""
    inputs = keras.Input(SHAPE)
    x = layers.Conv2D(4, 3, padding="same", activation="relu", name="conv",
                      kernel_initializer=keras.initializers.Constant(0.1))(inputs)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(2, activation="softmax", name="predictions",
                           kernel_initializer=keras.initializers.Constant([[1.0, -1.0]] * 4))(x)
    return keras.Model(inputs, outputs)


def images(n, seed=0):
    """Random uint8 images."""
    return np.random.default_rng(seed).integers(0, 256, (n, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)


def blob_image(box):
    """A dark image with one bright rectangle."""
    image = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    top, bottom, left, right = box
    image[top:bottom, left:right] = 250
    return image


def check_maps(maps, n):
    """Maps are (n, 48, 48), finite and in [0, 1], and not all zero."""
    assert maps.shape == (n, IMAGE_SIZE, IMAGE_SIZE)
    assert np.all(np.isfinite(maps))
    assert maps.min() >= 0.0 and maps.max() <= 1.0 + 1e-6
    assert np.all(maps.max(axis=(1, 2)) > 0.5)


# --- saliency puts its mass where the model looks ---

@pytest.mark.parametrize("region", ["mouth", "eyes"])
@pytest.mark.parametrize("samples", [0, 5])
def test_saliency_mass_lies_in_the_only_region_the_model_sees(region, samples):
    model = region_model(explain.REGIONS[region])
    maps = explain.saliency(model, images(3), [0, 1, 2], smooth_samples=samples, seed=1)
    check_maps(maps, 3)
    shares = explain.region_shares(maps)
    assert np.all(shares[region] > 0.999), shares
    others = shares.drop(columns=region)
    assert np.all(others.to_numpy() < 1e-3)


@pytest.mark.parametrize("box", [(8, 16, 8, 16), (30, 40, 26, 38)])
def test_gradcam_plus_plus_follows_the_bright_blob(box):
    maps = explain.gradcam_plus_plus(blob_model(), blob_image(box)[None], [0], layer="conv")
    check_maps(maps, 1)
    top, bottom, left, right = box
    peak = np.unravel_index(maps[0].argmax(), maps[0].shape)
    assert top - 1 <= peak[0] < bottom + 1 and left - 1 <= peak[1] < right + 1
    inside = maps[0, max(top - 2, 0):bottom + 2, max(left - 2, 0):right + 2].sum()
    assert inside / maps[0].sum() > 0.8


def test_smoothgrad_is_deterministic_under_a_seed():
    model = region_model((0, 48, 0, 48))
    x = images(2)
    a = explain.saliency(model, x, [0, 1], smooth_samples=4, noise=0.5, seed=3)
    b = explain.saliency(model, x, [0, 1], smooth_samples=4, noise=0.5, seed=3)
    c = explain.saliency(model, x, [0, 1], smooth_samples=4, noise=0.5, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_the_three_maps_from_one_pair_of_explainers_equal_the_maps_made_one_by_one():
    model, x = blob_model(), np.stack([blob_image((8, 16, 8, 16)), blob_image((30, 40, 26, 38))])
    maps = explain.explain_all(model, x, [0, 0], layer="conv", seed=2)
    np.testing.assert_allclose(maps["vanilla"], explain.saliency(model, x, [0, 0], seed=2), atol=1e-6)
    np.testing.assert_allclose(maps["SmoothGrad"], explain.saliency(model, x, [0, 0], explain.SMOOTH_SAMPLES, seed=2),
                               atol=1e-6)
    np.testing.assert_allclose(maps["Grad-CAM++"], explain.gradcam_plus_plus(model, x, [0, 0], "conv"), atol=1e-6)


def test_saliency_leaves_the_global_numpy_generator_alone():
    model = region_model((0, 48, 0, 48))
    np.random.seed(11)
    expected = np.random.random()
    np.random.seed(11)
    explain.saliency(model, images(1), [0], smooth_samples=2, seed=5)
    assert np.random.random() == expected


def test_map_correlation():
    rng = np.random.default_rng(0)
    a = rng.random((3, IMAGE_SIZE, IMAGE_SIZE))
    np.testing.assert_allclose(explain.map_correlation(a, 2 * a + 1), 1.0)
    np.testing.assert_allclose(explain.map_correlation(a, -a), -1.0)
    assert abs(explain.map_correlation(a, rng.random(a.shape))).max() < 0.1


# --- regions ---

def test_region_masks_are_disjoint_and_cover_the_image():
    masks = explain.region_masks()
    assert tuple(masks) == explain.REGION_NAMES
    stack = np.stack(list(masks.values())).astype(int)
    np.testing.assert_array_equal(stack.sum(axis=0), 1)
    assert explain.region_areas().sum() == pytest.approx(1.0)


def test_region_shares_of_uniform_and_single_pixel_maps():
    uniform = np.ones((1, IMAGE_SIZE, IMAGE_SIZE))
    np.testing.assert_allclose(explain.region_shares(uniform).iloc[0], explain.region_areas())
    dot = np.zeros((2, IMAGE_SIZE, IMAGE_SIZE))
    dot[0, 35, 24] = 1.0  # inside the mouth box
    dot[1, 0, 0] = 3.0  # a corner: border
    shares = explain.region_shares(dot)
    assert shares.loc[0, "mouth"] == 1.0 and shares.loc[1, "border"] == 1.0
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)


def test_region_shares_rejects_bad_maps():
    with pytest.raises(ValueError, match="shape"):
        explain.region_shares(np.ones((2, 10, 10)))
    with pytest.raises(ValueError, match="non-negative"):
        explain.region_shares(-np.ones((1, IMAGE_SIZE, IMAGE_SIZE)))


# --- choosing images ---

def fake_predictions(seed=0, n=300):
    """Labels and probabilities where about 60% of predictions are right."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(CLASSES), n)
    predicted = np.where(rng.random(n) < 0.6, y, rng.integers(0, len(CLASSES), n))
    probs = rng.random((n, len(CLASSES))) * 0.5
    probs[np.arange(n), predicted] = 1.0
    return y, probs / probs.sum(axis=1, keepdims=True)


def test_select_examples_takes_a_right_and_a_wrong_image_per_class():
    y, probs = fake_predictions()
    chosen = explain.select_examples(y, probs, seed=0)
    assert len(chosen) == 2 * len(CLASSES)
    for _, row in chosen.iterrows():
        assert CLASSES[y[row["index"]]] == row["true"]
        assert CLASSES[probs[row["index"]].argmax()] == row["predicted"]
        assert (row["true"] == row["predicted"]) == row["correct"]
        assert row["confidence"] == pytest.approx(probs[row["index"]].max())
    assert chosen.groupby("true")["correct"].agg(["sum", "count"]).eq([1, 2]).all().all()


def test_select_examples_is_reproducible_and_depends_on_the_seed():
    y, probs = fake_predictions()
    a, b = explain.select_examples(y, probs, seed=1), explain.select_examples(y, probs, seed=1)
    assert a.equals(b)
    assert not a["index"].equals(explain.select_examples(y, probs, seed=2)["index"])


def test_select_examples_skips_what_does_not_exist():
    y = np.repeat(np.arange(len(CLASSES)), 3)
    probs = np.eye(len(CLASSES))[y]  # every prediction right: no wrong examples to show
    chosen = explain.select_examples(y, probs, per_class=2)
    assert len(chosen) == 2 * len(CLASSES) and chosen["correct"].all()


def test_sample_per_class():
    y = np.array([0] * 10 + [1] * 2 + [3] * 7)
    picked = explain.sample_per_class(y, 5, seed=0)
    assert np.bincount(y[picked], minlength=len(CLASSES)).tolist() == [5, 2, 0, 5, 0, 0, 0]
    np.testing.assert_array_equal(picked, explain.sample_per_class(y, 5, seed=0))


# --- filters ---

def test_receptive_field_of_the_book_models():
    from fer_utils import models

    # report: 3, +1 (pool), +4*2 (5x5 at stride 2), +1*2, +2*4, +1*4, +2*8 = 42; simple: 3, +1, +2*2 = 8.
    assert explain.receptive_field(models.report_cnn(), "relu4") == 42
    assert explain.receptive_field(models.report_cnn(), "conv1") == 3
    assert explain.receptive_field(models.simple_cnn(), "relu2") == 8
    with pytest.raises(ValueError, match="no layer"):
        explain.receptive_field(models.simple_cnn(), "conv4")


@pytest.mark.parametrize("name", ["report", "simple"])
def test_every_map_works_on_the_book_models(name):
    from fer_utils import models

    keras.utils.set_random_seed(0)
    model, x = models.build(name), images(2)
    check_maps(explain.saliency(model, x, [3, 5], smooth_samples=2), 2)
    check_maps(explain.gradcam_plus_plus(model, x, [3, 5], explain.FEATURE_LAYER[name]), 2)
    last = explain.layer_outputs(model, x, explain.FEATURE_LAYER[name])
    assert last.ndim == 4 and last.min() >= 0  # rectified feature maps
    assert explain.layer_outputs(model, x, explain.EMBEDDING_LAYER).shape == (2, 512)
    dreams = explain.activation_maximization(model, explain.RESPONSE_LAYER[name], filters=[0, 1], steps=2)
    assert dreams.shape == (2, IMAGE_SIZE, IMAGE_SIZE) and np.all(np.isfinite(dreams))


def test_top_activating_ranks_by_peak_response():
    responses = np.zeros((4, 2, 2, 2))
    responses[2, 0, 1, 0], responses[0, 1, 1, 0] = 5.0, 3.0
    responses[3, 0, 0, 1], responses[1, 1, 0, 1] = 2.0, 1.0
    index, peaks = explain.top_activating(responses, k=2)
    np.testing.assert_array_equal(index, [[2, 0], [3, 1]])
    np.testing.assert_array_equal(peaks, [[5.0, 3.0], [2.0, 1.0]])


def test_filter_saliency_and_profile_on_a_tiny_model():
    model = region_model(explain.REGIONS["mouth"])
    x = images(12)
    maps = explain.filter_saliency(model, x[:4], [0, 1, 2, 3], layer="conv")
    check_maps(maps, 4)
    profile = explain.filter_profile(model, x, np.arange(12) % len(CLASSES), layer="conv", k=3)
    assert len(profile) == 4 and profile["top_class"].isin(CLASSES).all()
    np.testing.assert_allclose(profile[list(explain.REGION_NAMES)].sum(axis=1), 1.0)
    assert profile["top_class_share"].between(1 / 3, 1).all()


def test_activation_maximization_makes_valid_deterministic_images():
    model = blob_model()
    a = explain.activation_maximization(model, "conv", steps=5, seed=0)
    b = explain.activation_maximization(model, "conv", steps=5, seed=0)
    assert a.shape == (4, IMAGE_SIZE, IMAGE_SIZE) and np.all(np.isfinite(a))
    assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)
    # The filters are positive: maximising their response brightens the grey start.
    start = explain.layer_outputs(model, np.full((1, *SHAPE), 0.5, np.float32), "conv").mean()
    assert explain.layer_outputs(model, a, "conv").mean() > start


# --- embedding ---

def test_embedding_and_neighbour_agreement():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    clustered = rng.normal(size=(60, 8)) * 0.1 + np.eye(8)[labels] * 10
    assert explain.neighbour_agreement(clustered, labels) == 1.0
    assert explain.neighbour_agreement(rng.normal(size=(60, 8)), labels) < 0.7
    for method in ("pca", "tsne"):
        points = explain.embed_2d(clustered, method, seed=0)
        assert points.shape == (60, 2) and np.all(np.isfinite(points))
        np.testing.assert_array_equal(points, explain.embed_2d(clustered, method, seed=0))
    with pytest.raises(ValueError, match="method"):
        explain.embed_2d(clustered, "umap")


def test_coarse_region_shares_equal_the_shares_of_the_maps_blown_up():
    rng = np.random.default_rng(0)
    coarse = rng.random((5, 6, 6))
    fine = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)
    np.testing.assert_allclose(explain.coarse_region_shares(coarse), explain.region_shares(fine))
    with pytest.raises(ValueError, match="sides"):
        explain.coarse_region_shares(np.ones((1, 5, 5)))


def test_brightness_correlation_follows_the_light():
    bright = blob_image((8, 16, 8, 16)).astype(float)
    maps = np.stack([bright / 250, 1 - bright / 250])
    np.testing.assert_allclose(explain.brightness_correlation(maps, np.stack([bright, bright])), [1.0, -1.0])
