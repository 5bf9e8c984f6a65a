"""Duplicates, degenerate images and calibration: the library code behind chapter 8 (which composes the tables).

Exact duplicates are images with identical pixels. Near duplicates are found with a perceptual hash, pHash as
imagededup computes it: each image is area-averaged to 32x32, transformed with a 2-D DCT, and the 8x8 lowest
frequencies become 64 bits, one per coefficient at or above the median of the 63 that are not the mean. Two images
whose hashes differ in at most `NEAR_DISTANCE` bits are near duplicates. The search splits the 64 bits into blocks
and sorts by each (multi-index hashing), so it never compares all pairs. Calibration: the expected calibration
error over `ECE_BINS` equal-width bins of the top-class confidence, the negative log-likelihood, temperature scaling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fer_utils.data import CLASSES, IMAGE_SIZE, SPLITS, FerData

HASH_RESIZE = 32  # images are area-averaged to this side before the DCT
HASH_SIDE = 8  # the hash keeps this many lowest DCT frequencies per axis: HASH_SIDE**2 = 64 bits
HASH_BITS = HASH_SIDE * HASH_SIDE
NEAR_DISTANCE = 4  # near duplicates: hashes at most this many bits apart (and pixels not identical)
SEARCH_RADIUS = NEAR_DISTANCE + 2  # pairs are searched this far, to show some just outside the threshold
BLANK_STD = 5.0  # blank or near-constant: pixel standard deviation below this many grey levels
FLAT_BAND = 4  # the flatness rule counts pixels within this many grey levels of the most common level...
FLAT_SHARE = 0.75  # ...and flags an image (a probable non-face) when they are at least this share of it
ECE_BINS = 15  # equal-width bins of the top-class confidence
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}
KIND_NAMES = {"blank": "blank or near-constant", "flat": "flat (probable non-face)"}
# Flaws injected into the chapter's copy of the synthetic stand-in, per split: exact copies, near copies (of
# training images; every third one relabelled) and blank images.
INJECTED = {"train": {"exact": 6, "near": 4, "blank": 3}, "val": {"exact": 3, "near": 3, "blank": 1},
            "test": {"exact": 3, "near": 3, "blank": 1}}
BLANK_LEVELS = (0, 255, 128)  # grey levels of the injected blanks, in turn; the mid-grey one gets faint noise


# --- the perceptual hash and the pair search ----------------------------------------------------------------


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights that average a length-n_in signal over n_out equal cells (area resampling)."""
    edges = np.linspace(0, n_in, n_out + 1)
    pixel = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(edges[1:, None], pixel + 1) - np.maximum(edges[:-1, None], pixel), 0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def _dct_matrix(n: int, k: int) -> np.ndarray:
    """The first k rows of the unnormalised DCT-II basis of length n (scipy's default scaling, halved)."""
    return np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * np.arange(k)[:, None] / (2 * n))


def phash(images: np.ndarray) -> np.ndarray:
    """The 64-bit pHash (uint64) of each (N, 48, 48) image; the lowest frequency is the top bit."""
    images = np.asarray(images, dtype=np.float32)
    rows = (_dct_matrix(HASH_RESIZE, HASH_SIDE) @ _area_matrix(images.shape[1], HASH_RESIZE)).astype(np.float32)
    cols = (_dct_matrix(HASH_RESIZE, HASH_SIDE) @ _area_matrix(images.shape[2], HASH_RESIZE)).astype(np.float32)
    coefficients = (rows @ images @ cols.T).reshape(len(images), HASH_BITS)
    bits = coefficients >= np.median(coefficients[:, 1:], axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits in which the uint64 hashes `a` and `b` differ, elementwise."""
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


def _blocks(radius: int) -> list[tuple[int, int]]:
    """radius + 1 contiguous bit ranges (first, end) covering the hash: two hashes within `radius` agree on one."""
    edges = np.linspace(0, HASH_BITS, min(radius, HASH_BITS - 1) + 2).astype(int)
    return list(zip(edges[:-1], edges[1:]))


def _block_pairs(hashes: np.ndarray, first: int, end: int, radius: int) -> np.ndarray:
    """Pairs (i < j, distance) at most `radius` apart among hashes equal on bits first..end-1."""
    key = (hashes >> np.uint64(HASH_BITS - end)) & np.uint64((1 << (end - first)) - 1)
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    partners = np.repeat(starts + sizes, sizes) - np.arange(len(order)) - 1  # later members of the same bucket
    left = np.repeat(np.arange(len(order)), partners)
    right = left + 1 + np.arange(len(left)) - np.repeat(np.cumsum(partners) - partners, partners)
    a, b = order[left], order[right]
    distance = hamming(hashes[a], hashes[b])
    close = distance <= radius
    return np.stack([np.minimum(a, b)[close], np.maximum(a, b)[close], distance[close]], axis=1)


def hash_pairs(hashes: np.ndarray, radius: int) -> np.ndarray:
    """Every pair of hashes at most `radius` bits apart, as rows (i, j, distance) with i < j, sorted."""
    found = [_block_pairs(np.asarray(hashes, dtype=np.uint64), first, end, radius) for first, end in _blocks(radius)]
    return np.unique(np.concatenate([np.empty((0, 3), dtype=np.int64), *found]).astype(np.int64), axis=0)


def exact_ids(images: np.ndarray) -> np.ndarray:
    """A group number per image; pixel-identical images share it."""
    rows = np.ascontiguousarray(np.asarray(images, dtype=np.uint8).reshape(len(images), -1))
    return np.unique(rows.view(np.dtype((np.void, rows.shape[1]))).ravel(), return_inverse=True)[1].ravel()


def duplicate_search(images: np.ndarray, radius: int = SEARCH_RADIUS) -> pd.DataFrame:
    """Pairs of images whose pHashes are at most `radius` bits apart: i < j, distance, identical (pixels)."""
    found, ids = hash_pairs(phash(images), radius), exact_ids(images)
    return pd.DataFrame({"i": found[:, 0], "j": found[:, 1], "distance": found[:, 2],
                         "identical": ids[found[:, 0]] == ids[found[:, 1]]})


# --- degenerate images ---------------------------------------------------------------------------------------


def flat_share(images: np.ndarray, band: int = FLAT_BAND) -> np.ndarray:
    """Per image, the largest share of pixels within `band` grey levels of one level."""
    flat = np.asarray(images, dtype=np.uint8).reshape(len(images), -1)
    cells = (np.arange(len(flat), dtype=np.int64)[:, None] * 256 + flat).ravel()  # (image, grey level) per pixel
    counts = np.bincount(cells, minlength=256 * len(flat))
    cumulative = np.pad(counts.reshape(len(flat), 256), ((0, 0), (band + 1, band))).cumsum(axis=1)
    return (cumulative[:, 2 * band + 1:] - cumulative[:, :-2 * band - 1]).max(axis=1) / max(flat.shape[1], 1)


def degenerate(images: np.ndarray) -> pd.DataFrame:
    """Per image: pixel standard deviation, flat share and kind ('blank', 'flat' for a probable non-face, or '')."""
    std = np.asarray(images).reshape(len(images), -1).std(axis=1, dtype=np.float64)
    share = flat_share(images)
    kind = np.where(std < BLANK_STD, "blank", np.where(share >= FLAT_SHARE, "flat", ""))
    return pd.DataFrame({"std": std, "flat_share": share, "kind": kind})


# --- one data set's audit ------------------------------------------------------------------------------------


@dataclass
class Audit:
    """What the checks found in one data set: every image's split and label, its flags, and the close pairs."""

    images: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    flags: pd.DataFrame
    pairs: pd.DataFrame  # i < j into the pooled images, distance, identical, near, split_i/j, conflict


def audit(data: FerData) -> Audit:
    """Flag degenerate images, then search the rest for duplicates within and across splits."""
    split = np.concatenate([np.full(len(data.y[s]), s) for s in SPLITS])
    images, labels = (np.concatenate([part[s] for s in SPLITS]) for part in (data.x, data.y))
    flags = degenerate(images)
    kept = np.flatnonzero(flags["kind"].to_numpy() == "")
    pairs = duplicate_search(images[kept])
    pairs["i"], pairs["j"] = kept[pairs["i"].to_numpy()], kept[pairs["j"].to_numpy()]
    pairs = pairs.assign(near=pairs["distance"] <= NEAR_DISTANCE, split_i=split[pairs["i"]],
                         split_j=split[pairs["j"]], conflict=labels[pairs["i"]] != labels[pairs["j"]])
    return Audit(images, labels, split, flags, pairs.reset_index(drop=True))


def within(result: Audit, split: str) -> dict:
    """Duplicates inside one split: redundant exact copies, images with a near twin, pairs with different labels."""
    members = result.split == split
    ids = exact_ids(result.images[members & (result.flags["kind"].to_numpy() == "")])
    pairs = result.pairs[(result.pairs["split_i"] == split) & (result.pairs["split_j"] == split) & result.pairs["near"]]
    near = pairs[~pairs["identical"]]
    return {"images": int(members.sum()), "exact_copies": int(len(ids) - len(np.unique(ids))),
            "exact_pairs": int(pairs["identical"].sum()), "near_pairs": int(len(near)),
            "near_images": int(len(np.unique(near[["i", "j"]].to_numpy()))),
            "conflicting_pairs": int(pairs["conflict"].sum())}


def twins(result: Audit, split: str, reference: str = "train") -> pd.DataFrame:
    """Per image of `split`: its closest twin in `reference` ('exact', 'near', '') and if a twin's label differs."""
    start, n = int(np.argmax(result.split == split)), int((result.split == split).sum())
    pairs = result.pairs[result.pairs["near"]]
    cross = pairs[(pairs["split_i"] == reference) & (pairs["split_j"] == split)]
    mine = cross["j"].to_numpy() - start
    exact, near, conflict = (np.zeros(n, dtype=bool) for _ in range(3))
    np.logical_or.at(exact, mine, cross["identical"].to_numpy())
    np.logical_or.at(near, mine, True)
    np.logical_or.at(conflict, mine, cross["conflict"].to_numpy())
    return pd.DataFrame({"twin": np.where(exact, "exact", np.where(near, "near", "")), "conflict": conflict})


def twin_table(result: Audit) -> pd.DataFrame:
    """Per held-out split: images, those with an exact or only a near twin in training, those with a relabelled twin."""
    rows = {}
    for split in [s for s in SPLITS[1:] if (result.split == s).any()]:
        found = twins(result, split)
        rows[SPLIT_NAMES[split]] = {"images": len(found), "exact twin": int((found["twin"] == "exact").sum()),
                                    "near twin only": int((found["twin"] == "near").sum()),
                                    "twin with another label": int(found["conflict"].sum())}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("split")


# --- the synthetic stand-in's own flaws ----------------------------------------------------------------------


def inject_flaws(data: FerData, seed: int = 0) -> tuple[FerData, dict]:
    """A copy of `data` with the duplicates and blanks of `INJECTED` written over random images, and their count."""
    rng = np.random.default_rng(seed)
    x = {s: data.x[s].copy() for s in SPLITS}
    y = {s: data.y[s].copy() for s in SPLITS}
    sources = iter(rng.permutation(len(data.y["train"])))  # training targets come from here too: never a source
    for split, plan in INJECTED.items():
        targets = sources if split == "train" else iter(rng.permutation(len(y[split])))
        for kind in ("exact", "near"):
            for n in range(plan[kind]):
                target, source = next(targets), next(sources)
                image = data.x["train"][source]  # a near copy is a little brighter, with faint noise
                x[split][target] = (np.clip(image * 0.95 + 8 + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
                                    if kind == "near" else image)
                shift = (n % 3 == 2) * rng.integers(1, len(CLASSES))  # every third copy gets another label
                y[split][target] = (data.y["train"][source] + shift) % len(CLASSES)
        for n in range(plan["blank"]):
            level = BLANK_LEVELS[n % len(BLANK_LEVELS)]  # mid-grey gets faint noise: near-constant, not constant
            noise = rng.normal(0, 1.0, (IMAGE_SIZE, IMAGE_SIZE)) * (0 < level < 255)
            x[split][next(targets)] = np.clip(level + noise, 0, 255).astype(np.uint8)
    counts = {kind: sum(plan[kind] for plan in INJECTED.values()) for kind in ("exact", "near", "blank")}
    counts["relabelled"] = sum(plan["exact"] // 3 + plan["near"] // 3 for plan in INJECTED.values())
    note = "This chapter's copy of the stand-in has duplicates and blank images injected (quality.INJECTED)."
    return FerData(x, y, data.source, data.path, [*data.notes, note]), counts


def chapter_data(data: FerData, seed: int = 0) -> tuple[FerData, dict]:
    """The data the quality chapter audits: the stand-in with flaws injected, or real data as it is (and no counts)."""
    return inject_flaws(data, seed) if data.is_synthetic else (data, {})


# --- calibration ---------------------------------------------------------------------------------------------


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true labels."""
    return float(-np.mean(np.log(np.clip(np.asarray(probs)[np.arange(len(y)), y], 1e-12, None))))


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> pd.DataFrame:
    """Per equal-width bin (lower, upper] of the top-class confidence: images, mean confidence, accuracy."""
    probs = np.asarray(probs)
    confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == np.asarray(y)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    mean = np.bincount(which, confidence, minlength=bins) / np.maximum(count, 1)
    accuracy = np.bincount(which, correct, minlength=bins) / np.maximum(count, 1)
    return pd.DataFrame({"lower": edges[:-1], "upper": edges[1:], "images": count,
                         "confidence": np.where(count, mean, np.nan), "accuracy": np.where(count, accuracy, np.nan)})


def ece(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: the image-weighted mean gap between accuracy and confidence over the bins."""
    table = reliability(probs, y, bins)
    gaps = (table["accuracy"] - table["confidence"]).abs().fillna(0)
    return float(np.sum(table["images"] * gaps) / max(table["images"].sum(), 1))


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities with their log-probabilities (logits up to a constant) divided by `temperature`."""
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None)) / temperature
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of `y` (searched over 0.05-20)."""
    from scipy.optimize import minimize_scalar

    found = minimize_scalar(lambda log_t: nll(temper(probs, np.exp(log_t)), y), bounds=(np.log(0.05), np.log(20)),
                            method="bounded", options={"xatol": 1e-5})
    return float(np.exp(found.x))



