"""fer_utils.quality: duplicates and degenerate images planted in known places, predictions of known calibration."""

from __future__ import annotations

import os

import numpy as np
import pytest

from fer_utils import quality
from fer_utils.data import CLASSES, SPLITS, FerData, load


def smooth_images(n: int, seed: int = 0) -> np.ndarray:
    """n distinct 48x48 uint8 images of random smooth blobs (an 8x8 random field, upsampled), like no real pair."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(n, 8, 8))
    return np.kron(coarse, np.ones((6, 6))).astype(np.uint8)


def near_copy(image: np.ndarray, seed: int = 0) -> np.ndarray:
    """`image` slightly darker, brighter-offset and noisier."""
    rng = np.random.default_rng(seed)
    return np.clip(image * 0.9 + 10 + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)


def flat_image() -> np.ndarray:
    """A white page with a small dark glyph: 90% of the pixels at one level, a probable non-face."""
    image = np.full((48, 48), 250, dtype=np.uint8)
    image[20:35, 10:25] = np.random.default_rng(0).integers(0, 100, size=(15, 15))
    return image


@pytest.fixture
def planted() -> FerData:
    """A data set with known flaws.

    train (20): 0-15 distinct; 16 = copy of 0; 17 = near copy of 1; 18 = blank (0); 19 = flat page.
    val (6): 0 = copy of 2 (same label); 1 = copy of 3 relabelled; 2 = near copy of 4; 3, 4 distinct; 5 = constant 128.
    test (4): 0 = near copy of 5 relabelled; 1-3 distinct.
    """
    base = smooth_images(30, seed=3)
    train = np.concatenate([base[:16], base[[0]], near_copy(base[1])[None], np.zeros((1, 48, 48), np.uint8),
                            flat_image()[None]])
    y_train = np.arange(20) % len(CLASSES)
    y_train[16], y_train[17] = y_train[0], y_train[1]
    val = np.stack([base[2], base[3], near_copy(base[4], 1), base[20], base[21], np.full((48, 48), 128, np.uint8)])
    y_val = np.array([y_train[2], (y_train[3] + 1) % 7, y_train[4], 0, 1, 2])
    test = np.stack([near_copy(base[5], 2), base[22], base[23], base[24]])
    y_test = np.array([(y_train[5] + 2) % 7, 3, 4, 5])
    return FerData({"train": train, "val": val, "test": test}, {"train": y_train, "val": y_val, "test": y_test},
                   "kaggle-csv", None)


# --- hashing and the pair search -----------------------------------------------------------------------------


def test_phash_is_64_bits_per_image_and_ignores_brightness_and_contrast():
    images = smooth_images(50)
    hashes = quality.phash(images)
    assert hashes.dtype == np.uint64 and hashes.shape == (50,)
    assert len(np.unique(hashes)) == 50
    rescaled = np.clip(images * 0.8 + 20, 0, 255).astype(np.uint8)
    assert quality.hamming(hashes, quality.phash(rescaled)).max() <= 2
    assert np.median(quality.hamming(hashes[:25], hashes[25:])) > 16  # unrelated images: about half the bits


@pytest.mark.parametrize("radius", [0, 1, 4, 6, 9])
def test_hash_pairs_finds_exactly_the_pairs_a_brute_force_finds(radius):
    rng = np.random.default_rng(radius)
    hashes = rng.integers(0, 2**64 - 1, size=300, dtype=np.uint64, endpoint=True)
    flips = np.uint64(1) << rng.integers(0, 64, size=(100, 5)).astype(np.uint64)
    hashes[200:] = hashes[:100] ^ np.bitwise_xor.reduce(flips[:, : 1 + radius % 5], axis=1)  # planted close pairs
    distance = quality.hamming(hashes[:, None], hashes[None, :])
    i, j = np.triu_indices(len(hashes), 1)
    close = distance[i, j] <= radius
    expected = np.stack([i[close], j[close], distance[i, j][close]], axis=1)
    found = quality.hash_pairs(hashes, radius)
    np.testing.assert_array_equal(found, expected[np.lexsort(expected.T[::-1])])
    assert len(found) >= (100 if radius >= 1 + radius % 5 else 0)


def test_duplicate_search_tells_identical_pixels_from_near_copies():
    images = smooth_images(40)
    images = np.concatenate([images, images[[3]], near_copy(images[7])[None]])
    pairs = quality.duplicate_search(images).set_index(["i", "j"])
    assert pairs.loc[(3, 40), "identical"] and pairs.loc[(3, 40), "distance"] == 0
    assert not pairs.loc[(7, 41), "identical"] and pairs.loc[(7, 41), "distance"] <= quality.NEAR_DISTANCE
    assert len(pairs[pairs["distance"] <= quality.NEAR_DISTANCE]) == 2


def test_exact_ids_group_identical_images():
    images = smooth_images(5)
    ids = quality.exact_ids(np.concatenate([images, images[[1, 1, 4]]]))
    assert ids[1] == ids[5] == ids[6] and ids[4] == ids[7] and len(np.unique(ids)) == 5


# --- degenerate images ---------------------------------------------------------------------------------------


def test_degenerate_flags_blank_near_constant_and_flat_images_but_not_textured_ones():
    noise = np.random.default_rng(0).normal(0, 1.5, (48, 48))
    images = np.stack([np.zeros((48, 48)), np.full((48, 48), 255), np.clip(128 + noise, 0, 255), flat_image(),
                       *smooth_images(3)]).astype(np.uint8)
    flags = quality.degenerate(images)
    assert list(flags["kind"]) == ["blank", "blank", "blank", "flat", "", "", ""]
    assert flags["flat_share"].iloc[0] == 1.0 and flags["flat_share"].iloc[3] >= 0.9
    assert (flags["flat_share"].iloc[4:] < quality.FLAT_SHARE).all()


def test_flat_share_counts_pixels_within_the_band_of_one_level():
    image = np.zeros((48, 48), dtype=np.uint8)
    image[:24] = 100
    image[24:36] = 100 + quality.FLAT_BAND * 2  # within one band of 100 + FLAT_BAND
    image[36:] = 100 + quality.FLAT_BAND * 2 + 1
    assert quality.flat_share(image[None])[0] == pytest.approx(0.75)


# --- the audit of a data set with planted flaws --------------------------------------------------------------


def test_audit_finds_every_planted_flaw(planted):
    found = quality.audit(planted)
    assert list(found.flags["kind"][found.split == "train"].iloc[18:]) == ["blank", "flat"]
    assert found.flags["kind"][found.split == "val"].iloc[5] == "blank"
    train = quality.within(found, "train")
    assert train == {"images": 20, "exact_copies": 1, "exact_pairs": 1, "near_pairs": 1, "near_images": 2,
                     "conflicting_pairs": 0}
    val, test = quality.twins(found, "val"), quality.twins(found, "test")
    assert list(val["twin"]) == ["exact", "exact", "near", "", "", ""]
    assert list(val["conflict"]) == [False, True, False, False, False, False]
    assert list(test["twin"]) == ["near", "", "", ""] and list(test["conflict"]) == [True, False, False, False]


def test_tables_count_the_planted_pairs(planted):
    found = quality.audit(planted)
    near = found.pairs[found.pairs["near"]]
    assert near[["split_i", "split_j", "identical", "conflict"]].values.tolist() == [
        ["train", "train", True, False], ["train", "train", False, False], ["train", "val", True, False],
        ["train", "val", True, True], ["train", "val", False, False], ["train", "test", False, True]]
    twins = quality.twin_table(found)
    assert twins.loc["validation"].tolist() == [6, 2, 1, 1] and twins.loc["test"].tolist() == [4, 0, 1, 1]
    assert found.flags.groupby([found.flags["kind"], found.split]).size().to_dict() == {
        ("", "test"): 4, ("", "train"): 18, ("", "val"): 5, ("blank", "train"): 1, ("blank", "val"): 1,
        ("flat", "train"): 1}


# --- the stand-in's injected flaws ---------------------------------------------------------------------------


def test_injected_flaws_are_found_and_leave_the_original_alone(tiny_synthetic):
    before = tiny_synthetic.fingerprint
    data, injected = quality.chapter_data(tiny_synthetic, seed=0)
    assert tiny_synthetic.fingerprint == before and data.fingerprint != before
    assert injected == {"exact": 12, "near": 10, "blank": 5, "relabelled": 7}
    found = quality.audit(data)
    assert (found.flags["kind"] == "blank").sum() == injected["blank"]
    assert (found.pairs["near"] & found.pairs["identical"]).sum() == injected["exact"]
    near = found.pairs[found.pairs["near"] & ~found.pairs["identical"]]
    assert len(near) >= injected["near"]
    assert sum(quality.within(found, s)["images"] for s in SPLITS) == sum(len(tiny_synthetic.y[s]) for s in SPLITS)


def test_real_data_is_audited_as_it_is(planted):
    data, injected = quality.chapter_data(planted, seed=0)
    assert data is planted and injected == {}


# --- calibration ---------------------------------------------------------------------------------------------


def confident(confidence: float, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities with top-class `confidence` on class 0 and the rest spread evenly; labels right where `correct`."""
    probs = np.full((len(correct), 7), (1 - confidence) / 6)
    probs[:, 0] = confidence
    return probs, np.where(correct, 0, 1)


def test_ece_is_zero_when_every_bin_is_as_accurate_as_it_is_confident():
    a = confident(0.6, np.arange(100) < 60)
    b = confident(0.9, np.arange(100) < 90)
    probs, y = np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])
    assert quality.ece(probs, y) == pytest.approx(0, abs=1e-12)
    table = quality.reliability(probs, y)
    assert len(table) == quality.ECE_BINS and table["images"].sum() == 200
    assert table.dropna()["accuracy"].tolist() == pytest.approx([0.6, 0.9])


def test_ece_and_nll_of_an_over_confident_model():
    probs, y = confident(0.9, np.arange(100) < 60)
    assert quality.ece(probs, y) == pytest.approx(0.3)
    assert quality.nll(probs, y) == pytest.approx(-(0.6 * np.log(0.9) + 0.4 * np.log(0.1 / 6)))


def test_bins_are_closed_on_the_right():
    edges = np.linspace(0, 1, quality.ECE_BINS + 1)
    probs = np.zeros((3, 7))
    probs[:, 0] = [edges[3], edges[3] + 1e-9, 1.0]  # on an edge, just above it, and certain
    probs[:, 1:] = ((1 - probs[:, 0]) / 6)[:, None]
    table = quality.reliability(probs, np.zeros(3, dtype=int))
    assert table["images"].iloc[2] == 1 and table["images"].iloc[3] == 1 and table["images"].iloc[-1] == 1


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, size=(20000, 7))
    truth = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = (truth.cumsum(axis=1) > rng.uniform(size=(len(truth), 1))).argmax(axis=1)
    sharpened = quality.temper(truth, 0.5)  # a model twice as sure as it should be
    assert quality.fit_temperature(sharpened, y) == pytest.approx(2.0, rel=0.05)
    np.testing.assert_allclose(quality.temper(truth, 1.0), truth, atol=1e-9)
    assert (quality.temper(sharpened, 2.0).argmax(axis=1) == sharpened.argmax(axis=1)).all()
    assert quality.ece(quality.temper(sharpened, 2.0), y) < quality.ece(sharpened, y) / 3


# --- the real data, when a test run points at it ------------------------------------------------------------


@pytest.mark.fer2013
def test_duplicate_search_over_fer2013_finds_its_blank_images_and_copies():
    path = os.environ.get("FER2013_TEST_DATA")
    if not path:
        pytest.skip("FER2013_TEST_DATA is unset: point it at a FER2013 CSV to search the real data")
    data = load(path, verbose=False)
    found = quality.audit(data)  # its time is measured by `python -m benchmarks.duplicate_search`
    assert (found.flags["kind"] == "blank").sum() >= 12  # FER2013's all-black images
    assert quality.within(found, "train")["exact_copies"] > 1000
