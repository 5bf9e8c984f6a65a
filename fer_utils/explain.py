"""Explain a trained CNN: saliency maps, Grad-CAM++, feature maps and what drives the last conv layer's filters.

Maps come from tf-keras-vis on the model's input scale, [0, 1]. Each saliency map is normalised to [0, 1]
per image; `region_shares` turns maps into the share of their mass in fixed face regions, the numbers the
book's discussion rests on.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd

from fer_utils.data import CLASSES, IMAGE_SIZE, scale

# tf-keras-vis calls Keras 3 models with a list of inputs, and Keras warns of the structure on every call: a
# stderr output in each notebook cell that explains. The maps are unaffected.
warnings.filterwarnings("ignore", "The structure of `inputs`", UserWarning)

# Face regions as pixel boxes (top, bottom, left, right), half-open, on the 48 x 48 image. FER2013 faces are
# roughly centred and aligned; these boxes follow its mean face (and the synthetic faces' layout), so they are
# an approximation for any single face.
REGIONS = {
    "brows": (10, 16, 7, 41),
    "eyes": (16, 23, 7, 41),
    "nose": (23, 30, 16, 32),
    "mouth": (30, 40, 12, 36),
}
FACE_BOX = (6, 44, 6, 42)  # outside it: the border (background, hair, the image's edge)
FOREHEAD = (2, 10, 12, 36)  # above the brows, where FER2013's mean face is brightest; reaches above the face box
REGION_NAMES = (*REGIONS, "forehead", "rest of face", "border")
FEATURE_REGIONS = tuple(REGIONS)  # the facial features proper
# The last conv block's rectified output (feature maps) and its pre-ReLU response (what activation
# maximisation pushes up), per model; the penultimate layer's 512-d embedding.
FEATURE_LAYER = {"report": "relu4", "simple": "relu2"}
RESPONSE_LAYER = {"report": "bn4", "simple": "bn2"}
EMBEDDING_LAYER = "dense512_relu"
SMOOTH_SAMPLES = 20
SMOOTH_NOISE = 0.2  # noise sd as a share of each image's value range (SmoothGrad's default)


def _as_input(images: np.ndarray) -> np.ndarray:
    """Model input (N, 48, 48, 1) float32 in [0, 1] from uint8 images, or float images already in [0, 1]."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return scale(images)
    images = images.astype(np.float32)
    return images[..., None] if images.ndim == 3 else images


@contextlib.contextmanager
def _numpy_seed(seed: int) -> Iterator[None]:
    """Seed NumPy's global generator (tf-keras-vis draws its noise and jitter there), then restore it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


# --- choosing images ---

def select_examples(y: np.ndarray, probs: np.ndarray, per_class: int = 1, seed: int = 0) -> pd.DataFrame:
    """Per class, `per_class` images drawn at random (seeded) among those predicted right and among those wrong."""
    y, predicted = np.asarray(y), np.asarray(probs).argmax(axis=1)
    rng = np.random.default_rng(seed)
    rows = []
    for c, name in enumerate(CLASSES):
        for correct in (True, False):
            pool = np.flatnonzero((y == c) & ((predicted == c) == correct))
            for i in np.sort(rng.choice(pool, size=min(per_class, len(pool)), replace=False)):
                rows.append({"index": int(i), "true": name, "predicted": CLASSES[predicted[i]],
                             "confidence": float(probs[i, predicted[i]]), "correct": correct})
    return pd.DataFrame(rows, columns=["index", "true", "predicted", "confidence", "correct"])


def sample_per_class(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of up to `n` images per class, drawn at random (seeded), in ascending order."""
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(y == c), size=min(n, int(np.sum(y == c))), replace=False)
             for c in range(len(CLASSES))]
    return np.sort(np.concatenate(picks)).astype(np.int64)


# --- saliency maps ---

def explainer(kind: str, model):
    """tf-keras-vis' `Saliency` ('saliency') or `GradcamPlusPlus` ('gradcam') for `model`, on a copy whose softmax
    is linear."""
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

    return {"saliency": Saliency, "gradcam": GradcamPlusPlus}[kind](model, model_modifier=ReplaceToLinear(), clone=True)


def saliency(model, images: np.ndarray, classes, smooth_samples: int = 0, noise: float = SMOOTH_NOISE,
             seed: int = 0) -> np.ndarray:
    """|d score / d pixel| of each image's class (pre-softmax), (N, 48, 48) in [0, 1]; SmoothGrad if samples > 0."""
    from tf_keras_vis.utils.scores import CategoricalScore

    with _numpy_seed(seed):
        maps = explainer("saliency", model)(CategoricalScore(list(np.atleast_1d(classes))), _as_input(images),
                                            smooth_samples=smooth_samples, smooth_noise=noise)
    return np.asarray(maps, dtype=np.float32).reshape(len(images), IMAGE_SIZE, IMAGE_SIZE)


def gradcam_plus_plus(model, images: np.ndarray, classes, layer: str) -> np.ndarray:
    """Grad-CAM++ of each image's class on `layer`'s output, resized to (N, 48, 48), in [0, 1]."""
    from tf_keras_vis.utils.scores import CategoricalScore

    maps = explainer("gradcam", model)(CategoricalScore(list(np.atleast_1d(classes))), _as_input(images),
                                       penultimate_layer=layer, seek_penultimate_conv_layer=False)
    return np.asarray(maps, dtype=np.float32).reshape(len(images), IMAGE_SIZE, IMAGE_SIZE)


def explain_all(model, images: np.ndarray, classes, layer: str, seed: int = 0) -> dict[str, np.ndarray]:
    """The vanilla gradient, SmoothGrad and Grad-CAM++ on `layer` of each image's class, each (N, 48, 48) in [0, 1]."""
    from tf_keras_vis.utils.scores import CategoricalScore

    saliency, gradcam = explainer("saliency", model), explainer("gradcam", model)  # built once, used for each map
    score, inputs = CategoricalScore(list(np.atleast_1d(classes))), _as_input(images)  # the class's pre-softmax score
    with _numpy_seed(seed):  # SmoothGrad draws its noise from NumPy's global generator
        maps = {"vanilla": saliency(score, inputs),
                "SmoothGrad": saliency(score, inputs, smooth_samples=SMOOTH_SAMPLES, smooth_noise=SMOOTH_NOISE),
                "Grad-CAM++": gradcam(score, inputs, penultimate_layer=layer, seek_penultimate_conv_layer=False)}
    return {name: np.asarray(m, dtype=np.float32).reshape(len(inputs), IMAGE_SIZE, IMAGE_SIZE)
            for name, m in maps.items()}


def brightness_correlation(maps: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Per image, the Pearson correlation between its map and its own grey levels: do the maps follow the light?"""
    return map_correlation(np.asarray(maps, dtype=np.float64), np.asarray(images, dtype=np.float64))


def map_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation between paired maps, one value per pair (NaN where a map is constant)."""
    a = a.reshape(len(a), -1) - a.reshape(len(a), -1).mean(axis=1, keepdims=True)
    b = b.reshape(len(b), -1) - b.reshape(len(b), -1).mean(axis=1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=1) / denom


# --- face regions ---

def region_masks(size: int = IMAGE_SIZE) -> dict[str, np.ndarray]:
    """Disjoint boolean masks, one per name in REGION_NAMES, that together cover the image."""
    masks = {}
    for name, (top, bottom, left, right) in REGIONS.items():
        mask = np.zeros((size, size), dtype=bool)
        mask[top:bottom, left:right] = True
        masks[name] = mask
    top, bottom, left, right = FACE_BOX
    face = np.zeros((size, size), dtype=bool)
    face[top:bottom, left:right] = True
    named = np.any(list(masks.values()), axis=0)
    top, bottom, left, right = FOREHEAD
    forehead = np.zeros((size, size), dtype=bool)
    forehead[top:bottom, left:right] = True
    masks["forehead"] = forehead & ~named
    masks["rest of face"] = face & ~named & ~forehead
    masks["border"] = ~face & ~forehead
    return masks


def region_areas() -> pd.Series:
    """Each region's share of the image's pixels (what a uniform map would give)."""
    masks = region_masks()
    return pd.Series({name: float(m.mean()) for name, m in masks.items()}, name="area")


def region_shares(maps: np.ndarray) -> pd.DataFrame:
    """Share of each map's total mass in each region (rows: maps, columns: REGION_NAMES; rows sum to 1)."""
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3 or maps.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"maps must have shape (N, {IMAGE_SIZE}, {IMAGE_SIZE}), got {maps.shape}")
    if np.any(maps < 0) or not np.all(np.isfinite(maps)):
        raise ValueError("maps must be finite and non-negative to be read as mass")
    total = maps.sum(axis=(1, 2))
    total = np.where(total > 0, total, np.nan)
    shares = {name: (maps * m).sum(axis=(1, 2)) / total for name, m in region_masks().items()}
    return pd.DataFrame(shares)


def coarse_region_shares(maps: np.ndarray) -> pd.DataFrame:
    """`region_shares` of coarse maps (N, h, w) whose units each stand for a block of pixels, as if each unit's
    value were spread over its block of the 48 x 48 image (h and w divide 48)."""
    maps = np.asarray(maps, dtype=np.float64)
    n, h, w = maps.shape
    if IMAGE_SIZE % h or IMAGE_SIZE % w or np.any(maps < 0):
        raise ValueError(f"maps must be non-negative with sides dividing {IMAGE_SIZE}, got {maps.shape}")
    masks = region_masks()
    weights = np.stack([m.reshape(h, IMAGE_SIZE // h, w, IMAGE_SIZE // w).mean(axis=(1, 3)) for m in masks.values()])
    total = maps.sum(axis=(1, 2))
    shares = np.einsum("nhw,rhw->nr", maps, weights) / np.where(total > 0, total, np.nan)[:, None]
    return pd.DataFrame(shares, columns=list(masks))


# --- the last conv layer's filters ---

def receptive_field(model, layer: str) -> int:
    """Side in input pixels of the window one unit of `layer` sees (square kernels and pools, as in our CNNs)."""
    size, jump = 1, 1
    for current in model.layers:
        kernel = getattr(current, "kernel_size", None) or getattr(current, "pool_size", None)
        if kernel is not None:
            size += (kernel[0] - 1) * jump
            jump *= current.strides[0]
        if current.name == layer:
            return size
    raise ValueError(f"model {model.name!r} has no layer {layer!r}")


def layer_outputs(model, images: np.ndarray, layer: str, batch_size: int = 256) -> np.ndarray:
    """The output of `layer` for each image, as a NumPy array (N, ...)."""
    import keras

    probe = keras.Model(model.inputs, model.get_layer(layer).output)
    return np.asarray(probe.predict(_as_input(images), batch_size=batch_size, verbose=0))


def top_activating(responses: np.ndarray, k: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """For each filter, the indices (C, k) of the k images with the highest peak response, and those peaks."""
    peaks = responses.max(axis=(1, 2))  # (N, C): each filter's strongest response anywhere in the image
    order = np.argsort(-peaks, axis=0, kind="stable")[:k].T
    return order, np.take_along_axis(peaks.T, order, axis=1)


def filter_saliency(model, images: np.ndarray, filters, layer: str) -> np.ndarray:
    """|d peak response / d pixel| of one filter of `layer` per image, (N, 48, 48) in [0, 1]."""
    import tensorflow as tf
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.model_modifiers import ExtractIntermediateLayer

    index = tf.constant(np.atleast_1d(filters).astype(np.int32))
    explainer = Saliency(model, model_modifier=ExtractIntermediateLayer(layer), clone=True)
    maps = explainer(lambda out: tf.reduce_max(tf.gather(out, index, axis=-1, batch_dims=1), axis=(1, 2)),
                     _as_input(images))
    return np.asarray(maps, dtype=np.float32).reshape(len(images), IMAGE_SIZE, IMAGE_SIZE)


def filter_profile(model, images: np.ndarray, labels: np.ndarray, layer: str, k: int = 9) -> pd.DataFrame:
    """Per filter of `layer`: its top-k images' classes, where its input gradient falls on them, how often it fires."""
    responses = layer_outputs(model, images, layer)
    top, peaks = top_activating(responses, k)
    channels = np.repeat(np.arange(len(top)), top.shape[1])
    shares = region_shares(filter_saliency(model, images[top.ravel()], channels, layer))
    shares = shares.groupby(channels).mean()
    enrichment = shares / region_areas()
    top_labels = labels[top]
    majority = np.array([np.bincount(row, minlength=len(CLASSES)).argmax() for row in top_labels])
    frame = pd.DataFrame({
        "top_class": [CLASSES[c] for c in majority],
        "top_class_share": (top_labels == majority[:, None]).mean(axis=1),
        "peak": peaks[:, 0],
        "active_share": (responses.max(axis=(1, 2)) > 0).mean(axis=0),
        "region": enrichment[list(FEATURE_REGIONS)].idxmax(axis=1).to_numpy(),
        "feature_share": shares[list(FEATURE_REGIONS)].sum(axis=1).to_numpy(),
    }, index=pd.Index(np.arange(len(top)), name="filter"))
    return frame.join(shares.set_axis(frame.index))


def activation_maximization(model, layer: str, filters=None, steps: int = 200, seed: int = 0,
                            jitter: int = 2, tv_weight: float = 1.0, learning_rate: float = 0.05) -> np.ndarray:
    """Images (F, 48, 48) in [0, 1] grown from grey noise to maximise each filter's mean response on `layer`."""
    import keras
    import tensorflow as tf
    from tf_keras_vis.activation_maximization import ActivationMaximization
    from tf_keras_vis.activation_maximization.input_modifiers import Jitter
    from tf_keras_vis.activation_maximization.regularizers import TotalVariation2D
    from tf_keras_vis.utils.model_modifiers import ExtractIntermediateLayer

    if filters is None:
        filters = np.arange(model.get_layer(layer).output.shape[-1])
    filters = np.atleast_1d(filters).astype(np.int32)
    index = tf.constant(filters)
    rng = np.random.default_rng(seed)
    start = rng.uniform(0.45, 0.55, (len(filters), IMAGE_SIZE, IMAGE_SIZE, 1)).astype(np.float32)
    explainer = ActivationMaximization(model, model_modifier=ExtractIntermediateLayer(layer), clone=True)
    with _numpy_seed(seed):
        images = explainer(lambda out: tf.reduce_mean(tf.gather(out, index, axis=-1, batch_dims=1), axis=(1, 2)),
                           seed_input=start, input_range=(0.0, 1.0), steps=steps,
                           input_modifiers=[Jitter(jitter=jitter)] if jitter else [],
                           regularizers=[TotalVariation2D(weight=tv_weight)],
                           optimizer=keras.optimizers.Adam(learning_rate))
    return np.asarray(images, dtype=np.float32).reshape(len(filters), IMAGE_SIZE, IMAGE_SIZE)


# --- the penultimate layer's embedding ---

def embed_2d(features: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """A 2-D map (N, 2) of feature vectors by t-SNE or PCA, deterministic from `seed`."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    if method not in ("tsne", "pca"):
        raise ValueError(f"unknown method {method!r}; use 'tsne' or 'pca'")
    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    # One thread: t-SNE's OpenMP threads slow it down tenfold when the cores are shared with TensorFlow.
    with threadpool_limits(1):
        if method == "pca":
            return PCA(2, random_state=seed).fit_transform(features)
        reduced = PCA(min(50, *features.shape), random_state=seed).fit_transform(features)
        perplexity = min(30.0, (len(features) - 1) / 3)
        return TSNE(2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(reduced)


def neighbour_agreement(features: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Share of points whose k nearest other points (Euclidean) vote for their own class."""
    from sklearn.neighbors import NearestNeighbors

    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    _, neighbours = NearestNeighbors(n_neighbors=k).fit(features).kneighbors()  # no X: each point left out
    votes = labels[neighbours]
    majority = np.array([np.bincount(row, minlength=len(CLASSES)).argmax() for row in votes])
    return float(np.mean(majority == labels))
