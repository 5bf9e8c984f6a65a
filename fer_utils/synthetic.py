"""A synthetic stand-in for FER2013: procedurally drawn 48x48 faces of the seven expressions.

Each expression is a distribution over a few facial parameters (brow height and tilt, eye
openness, mouth curve, width and openness, nose wrinkle). Neighbouring expressions share
much of their range (fear/surprise, angry/disgust, sad/neutral), and every face is varied in
position, scale, rotation, lighting, noise and occlusion, so a CNN learns a lot but not all.
"""

from __future__ import annotations

import numpy as np

from fer_utils.data import CLASSES, IMAGE_SIZE, SPLITS, FerData

# Images per class in the train split: FER2013's class shares scaled to about 4,000 images.
TRAIN_PER_CLASS = (560, 90, 570, 1000, 670, 440, 690)
EVAL_FRACTION = 0.125  # val and test each get this share of the train size, per class

# Mean and spread of each facial parameter per expression, in face units (the face is about 2 wide).
#            brow_y  brow_tilt eye_open mouth_curve mouth_open mouth_width wrinkle
_MEAN = {
    "angry":    (0.02, -0.13, 0.75, -0.06, 0.03, 0.30, 0.25),
    "disgust":  (0.02, -0.08, 0.60, -0.12, 0.06, 0.30, 0.85),
    "fear":     (-0.10, 0.10, 1.25, -0.04, 0.14, 0.40, 0.10),
    "happy":    (-0.02, 0.00, 0.80, 0.16, 0.08, 0.40, 0.15),
    "sad":      (0.00, 0.12, 0.80, -0.10, 0.00, 0.30, 0.05),
    "surprise": (-0.12, 0.05, 1.30, 0.00, 0.22, 0.26, 0.05),
    "neutral":  (0.00, 0.02, 0.90, -0.02, 0.00, 0.32, 0.05),
}
_SPREAD = (0.035, 0.05, 0.15, 0.045, 0.05, 0.04, 0.25)


def make_synthetic(seed: int = 0, scale: float = 1.0) -> FerData:
    """Train/val/test splits of synthetic faces, deterministic from `seed`."""
    rng = np.random.default_rng(seed)
    x, y = {}, {}
    for split in SPLITS:
        share = 1.0 if split == "train" else EVAL_FRACTION
        counts = [max(2, int(round(n * share * scale))) for n in TRAIN_PER_CLASS]
        labels = np.repeat(np.arange(len(CLASSES)), counts)
        labels = labels[rng.permutation(len(labels))]
        x[split] = np.stack([draw_face(CLASSES[c], rng) for c in labels])
        y[split] = labels.astype(np.int64)
    note = ("SYNTHETIC STAND-IN: no FER2013 file was found (set FER_DATA or put fer2013.csv in data/), "
            "so these are procedurally drawn faces, not real photographs.")
    return FerData(x, y, "synthetic", None, [note])


def draw_face(expression: str, rng: np.random.Generator) -> np.ndarray:
    """One 48x48 uint8 face showing `expression`, with random pose, lighting, noise and occlusion."""
    brow_y, brow_tilt, eye_open, curve, mouth_open, width, wrinkle = (
        m + s * rng.standard_normal() for m, s in zip(_MEAN[expression], _SPREAD)
    )
    u, v = _face_coordinates(rng)
    skin = rng.uniform(0.45, 0.8)
    image = _background(rng)
    face = _soft(1.0 - np.hypot(u / 0.78, v / 0.98), 0.04)
    image = image * (1 - face) + skin * face
    hair = face * _soft(-0.62 + rng.uniform(-0.1, 0.1) - v, 0.04)
    image = image * (1 - hair) + rng.uniform(0.05, 0.35) * hair
    dark = np.zeros_like(u)
    for side in (-1.0, 1.0):
        cx = 0.33 * side
        openness = max(eye_open, 0.15)
        eye = _soft(1.0 - np.hypot((u - cx) / 0.15, (v + 0.12) / (0.075 * openness)), 0.12)
        pupil = _soft(1.0 - np.hypot(u - cx, v + 0.12) / (0.05 * min(openness, 1.2)), 0.15) * eye
        inner, outer = cx - 0.13 * side, cx + 0.13 * side
        y_brow = -0.33 + brow_y
        dark = np.maximum(dark, 0.55 * eye + 0.45 * pupil)
        dark = np.maximum(dark, _stroke(u, v, (inner, y_brow - brow_tilt), (outer, y_brow + 0.5 * brow_tilt), 0.035))
    dark = np.maximum(dark, 0.5 * _stroke(u, v, (0.0, -0.05), (0.0, 0.22), 0.025))
    for side in (-1.0, 1.0):
        dark = np.maximum(dark, 0.6 * wrinkle * _stroke(u, v, (0.05 * side, 0.02), (0.14 * side, 0.12), 0.02))
    dark = np.maximum(dark, _mouth(u, v, curve, mouth_open, width))
    image = image * (1 - 0.85 * dark * face)
    image = _lighting_noise_occlusion(image, rng)
    return np.clip(image * 255, 0, 255).astype(np.uint8)


def _face_coordinates(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Face-frame coordinates (u, v) of each pixel after a random shift, scale and rotation."""
    grid = (np.arange(IMAGE_SIZE) + 0.5) / IMAGE_SIZE * 2 - 1
    px, py = np.meshgrid(grid, grid)
    angle = np.deg2rad(rng.normal(0, 8))
    zoom = rng.uniform(0.8, 1.0)
    px, py = px - rng.normal(0, 0.06), py - rng.normal(0, 0.06)
    u = (np.cos(angle) * px + np.sin(angle) * py) / zoom
    v = (-np.sin(angle) * px + np.cos(angle) * py) / zoom
    return u, v


def _soft(signed: np.ndarray, width: float) -> np.ndarray:
    """A smooth 0-1 mask that is 1 where `signed` > 0, with an edge `width` wide."""
    return 1.0 / (1.0 + np.exp(-np.clip(signed / width, -30, 30)))


def _stroke(u: np.ndarray, v: np.ndarray, a: tuple, b: tuple, thickness: float) -> np.ndarray:
    """A soft line segment from a to b."""
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    t = np.clip(((u - ax) * dx + (v - ay) * dy) / (dx * dx + dy * dy + 1e-9), 0, 1)
    dist = np.hypot(u - ax - t * dx, v - ay - t * dy)
    return _soft(thickness - dist, thickness * 0.4)


def _mouth(u: np.ndarray, v: np.ndarray, curve: float, opening: float, width: float) -> np.ndarray:
    """Lips along a parabola (positive curve smiles), filled dark where the mouth is open."""
    width = max(width, 0.12)
    t = np.clip(u / width, -1, 1)
    centre = 0.45 - curve * (t**2 - 0.5)
    inside = _soft(1 - np.abs(u) / width, 0.05)
    half_gap = max(opening, 0.0) / 2 * (1 - t**2)
    lips = _soft(0.03 - np.abs(np.abs(v - centre) - half_gap), 0.012) * inside
    hole = _soft(half_gap - np.abs(v - centre), 0.015) * inside
    return np.maximum(0.8 * lips, 0.95 * hole)


def _background(rng: np.random.Generator) -> np.ndarray:
    """A smooth random grey gradient behind the face."""
    grid = np.linspace(-1, 1, IMAGE_SIZE)
    px, py = np.meshgrid(grid, grid)
    return np.clip(rng.uniform(0.2, 0.8) + rng.normal(0, 0.15) * px + rng.normal(0, 0.15) * py, 0, 1)


def _lighting_noise_occlusion(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Side lighting, contrast, sensor noise and, sometimes, an occluding block."""
    grid = np.linspace(-1, 1, IMAGE_SIZE)
    px, _ = np.meshgrid(grid, grid)
    image = image * (1 + rng.normal(0, 0.18) * px) * rng.uniform(0.7, 1.25)
    image = image + rng.normal(0, rng.uniform(0.02, 0.07), image.shape)
    if rng.random() < 0.2:
        h, w = rng.integers(8, 20, size=2)
        top, left = rng.integers(0, IMAGE_SIZE - h), rng.integers(0, IMAGE_SIZE - w)
        image[top:top + h, left:left + w] = rng.uniform(0.0, 1.0)
    return image
