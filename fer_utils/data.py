"""Find, read and validate FER2013 in the forms students have, and feed it to Keras."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
IMAGE_SIZE = 48
N_PIXELS = IMAGE_SIZE * IMAGE_SIZE
SPLITS = ("train", "val", "test")
USAGE_TO_SPLIT = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"
# Looked for under data/ (or a folder given), in this order; any other name there stops loading.
DATA_CANDIDATES = tuple(f"{name}{gz}" for name in ("fer2013.csv", "icml_face_data.csv", "fer2013/fer2013.csv",
                                                  "train.csv") for gz in ("", ".gz")) + ("fer2013", ".")
DATA_NAMES = {c.split("/")[0] for c in DATA_CANDIDATES} | {"test.csv", "train", "test"}
FORMS = ("Accepted: fer2013.csv or icml_face_data.csv (Kaggle, with a Usage column; .csv.gz too), "
         "fer2013/fer2013.csv (Kaggle's fer2013.tar.gz unpacked), train.csv (the course's label,feature, or the "
         "challenge's emotion,pixels with its test.csv beside it), or the image tree train/<class>/*.jpg and "
         "test/<class>/*.jpg (here or in fer2013/); see data/README.md.")
VAL_FRACTION = 0.1
PARSED_DIR = PROJECT_ROOT / ".cache" / "data"  # parsed copies of data files, so each chapter reads in a second
PARSE_ONCE_BYTES = 10_000_000  # files at least this large are parsed once (FER2013 is about 85 MB gzipped)


class DataError(ValueError):
    """Input data that cannot be used as it is; the message names the file, row and problem."""


@dataclass
class FerData:
    """Images (uint8, N x 48 x 48) and labels (int) per split, with where they came from."""

    x: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    source: str
    path: str | None
    notes: list[str] = field(default_factory=list)
    from_training: tuple[str, ...] = ("train",)  # the splits whose images are FER2013's Training rows

    @property
    def is_synthetic(self) -> bool:
        """True for the generated stand-in."""
        return self.source == "synthetic"

    @property
    def held_out(self) -> str:
        """The split to report on: 'test', or 'val' when the data has no test split."""
        return "test" if len(self.y["test"]) else "val"

    @property
    def fingerprint(self) -> str:
        """Short SHA-256 of every image and label, split by split."""
        h = hashlib.sha256()
        for split in SPLITS:
            h.update(split.encode())
            h.update(np.ascontiguousarray(self.x[split], dtype=np.uint8).tobytes())
            h.update(np.ascontiguousarray(self.y[split], dtype=np.int64).tobytes())
        return h.hexdigest()[:16]

    def counts(self) -> pd.DataFrame:
        """Images per class (rows) and split (columns), with totals."""
        table = pd.DataFrame(
            {s: np.bincount(self.y[s], minlength=len(CLASSES)) for s in SPLITS},
            index=pd.Index(CLASSES, name="class"),
        )
        table.loc["total"] = table.sum()
        return table

    def sizes(self) -> str:
        """Images per split, as 'train 28,709, val 3,589, test 0'."""
        return ", ".join(f"{s} {len(self.y[s]):,}" for s in SPLITS)

    def describe(self) -> str:
        """One paragraph saying what was loaded, for logs and the book."""
        where = f" from {self.path}" if self.path else ""
        text = f"FER data: {self.source}{where} ({self.sizes()}); fingerprint {self.fingerprint}."
        return " ".join([text, *self.notes])


def load(path: str | os.PathLike | None = None, seed: int = 0, verbose: bool = True) -> FerData:
    """Load FER2013 from `path`, else $FER_DATA, else data/, else the synthetic stand-in."""
    target = locate(path)
    if target is None:
        from fer_utils.synthetic import make_synthetic

        data = make_synthetic(seed=seed)
    elif target.is_file() and target.stat().st_size >= PARSE_ONCE_BYTES:
        data = read_parsed(target, seed=seed)
    else:
        data = read(target, seed=seed)
    if verbose:
        print(data.describe())
    return data


def read_parsed(path: Path, seed: int = 0, cache_dir: Path = PARSED_DIR) -> FerData:
    """`read` a data file once; later calls load its parsed arrays, kept under `cache_dir` by the files' content."""
    key = json.dumps([*source_identity(path), seed])
    cached = Path(cache_dir) / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if cached.exists():
        with np.load(cached) as saved:
            info = {**json.loads(str(saved["info"])), "path": str(path)}  # the same bytes, perhaps copied or moved
            info["from_training"] = tuple(info.get("from_training", ("train",)))
            return FerData({s: saved[f"x_{s}"] for s in SPLITS}, {s: saved[f"y_{s}"] for s in SPLITS}, **info)
    data = read(path, seed=seed)
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.npz")
    info = json.dumps({"source": data.source, "path": data.path, "notes": data.notes,
                       "from_training": data.from_training})
    np.savez(partial, info=info, **{f"x_{s}": data.x[s] for s in SPLITS}, **{f"y_{s}": data.y[s] for s in SPLITS})
    os.replace(partial, cached)  # whole or absent: a stopped write leaves no cache entry
    return data


def locate(path: str | os.PathLike | None = None) -> Path | None:
    """The file or folder `load` reads: `path`, else $FER_DATA, else the data under data/; None for the stand-in."""
    if path is None and os.environ.get("FER_DATA"):
        path = os.environ["FER_DATA"]
        if not Path(path).exists():
            raise DataError(f"FER_DATA is set to {path!r}, which does not exist.")
    if path is not None and not Path(path).exists():
        raise DataError(f"{path}: no such file or folder.")
    folder = DATA_DIR if path is None else Path(path)
    found = folder if folder.is_file() else next((folder / c for c in DATA_CANDIDATES if _is_data(folder / c)), None)
    if path is not None or not folder.is_dir():
        return found if path is None else found or folder
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "README.md")
    strays = [p for p in entries if p.name not in DATA_NAMES]  # data/ only: a folder given may hold anything else
    if strays or (entries and found is None):
        raise DataError(f"{(strays or entries)[0]}: not a form of FER2013 that fer_utils reads. {FORMS}")
    return found


def source_files(path: Path) -> list[Path]:
    """The files `read` reads for `path`: a folder's files, or the file (the challenge's train.csv with test.csv)."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file())
    test = path.with_name("test.csv")
    return [path, test] if path.name.startswith("train.csv") and test.is_file() else [path]


def source_identity(path: Path) -> list[list]:
    """The files `read` reads for `path` by content, not place: [name, bytes, SHA-256] each, named within its folder."""
    path = Path(path)
    root = path if path.is_dir() else path.parent
    return [[p.relative_to(root).as_posix(), p.stat().st_size, file_sha256(p)] for p in source_files(path)]


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_data(candidate: Path) -> bool:
    """Whether `candidate` is a data file, or a folder holding the image tree's train/."""
    return candidate.is_file() or (candidate / "train").is_dir()


def read(path: str | os.PathLike, seed: int = 0) -> FerData:
    """Read a Kaggle CSV, the challenge's train.csv (with test.csv), a course `label,feature` CSV or an image tree."""
    path = Path(path)
    if path.is_dir():
        return read_image_folder(path, seed=seed)
    frame = _read_csv(path)
    columns = set(frame.columns)
    if {"emotion", "pixels", "Usage"} <= columns:
        return _from_kaggle(frame, path)
    if {"emotion", "pixels"} <= columns:
        return _from_challenge(frame, path, seed)
    if {"label", "feature"} <= columns:
        return _carved(_parse_labels(frame["label"], path, "label"), parse_pixels(frame["feature"], path), path,
                       seed, "course-csv", "This file has no Usage column")
    raise DataError(
        f"{path}: columns {sorted(columns)} match none of the forms: Kaggle (emotion,pixels,Usage), the "
        "challenge's train.csv (emotion,pixels) or the course's (label,feature)."
    )


def _read_csv(path: Path) -> pd.DataFrame:
    """Read a CSV (plain or gzip) as strings, turning every failure into a DataError."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, compression="infer")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty.") from None
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as err:
        raise DataError(f"{path}: cannot be decompressed or read ({err}); is it truncated?") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a readable CSV ({err}).") from None
    if frame.empty:
        raise DataError(f"{path}: has a header but no rows.")
    frame.columns = [c.strip() for c in frame.columns]
    return frame


def _from_kaggle(frame: pd.DataFrame, path: Path) -> FerData:
    """Split a Kaggle `emotion,pixels,Usage` table by its Usage column."""
    labels = _parse_labels(frame["emotion"], path, "emotion")
    pixels = parse_pixels(frame["pixels"], path)
    usage = frame["Usage"].str.strip()
    unknown = ~usage.isin(list(USAGE_TO_SPLIT))
    if unknown.any():
        row = int(np.argmax(unknown.to_numpy()))
        raise DataError(
            f"{_at(path, row)}: Usage {usage.iloc[row]!r} is not one of {list(USAGE_TO_SPLIT)}."
        )
    split = usage.map(USAGE_TO_SPLIT).to_numpy()
    x = {s: pixels[split == s] for s in SPLITS}
    y = {s: labels[split == s] for s in SPLITS}
    notes = [] if len(y["test"]) else ["This file has no PrivateTest rows, so the test split is empty."]
    return FerData(x, y, "kaggle-csv", str(path), notes)


def _from_challenge(frame: pd.DataFrame, path: Path, seed: int) -> FerData:
    """The challenge's train.csv (Training); its test.csv's halves, if labelled, are PublicTest and PrivateTest."""
    labels, pixels = _parse_labels(frame["emotion"], path, "emotion"), parse_pixels(frame["pixels"], path)
    test = path.with_name("test.csv")
    held = _read_csv(test) if test.is_file() else None
    if held is None or "emotion" not in held.columns:
        why = f"{test} is unlabelled" if held is not None else f"There is no test.csv beside {path.name}"
        return _carved(labels, pixels, path, seed, "kaggle-csv", f"{why}, so {path.name} alone is used")
    public, private = np.array_split(np.arange(len(held)), 2)
    held_labels, held_pixels = _parse_labels(held["emotion"], test, "emotion"), parse_pixels(held["pixels"], test)
    x = {"train": pixels, "val": held_pixels[public], "test": held_pixels[private]}
    y = {"train": labels, "val": held_labels[public], "test": held_labels[private]}
    note = (f"{test}: its first {len(public):,} rows (PublicTest) validate, "
            f"its other {len(private):,} (PrivateTest) test.")
    return FerData(x, y, "kaggle-csv", str(path), [note])


def _carved(labels: np.ndarray, pixels: np.ndarray, path: Path, seed: int, source: str, why: str) -> FerData:
    """Train, and a stratified, seeded validation split carved from it; no test split."""
    train, val = stratified_split(labels, VAL_FRACTION, seed)
    x = {"train": pixels[train], "val": pixels[val], "test": pixels[:0]}
    y = {"train": labels[train], "val": labels[val], "test": labels[:0]}
    note = (f"{why}: {VAL_FRACTION:.0%} of its rows, stratified by class with seed {seed}, form the validation "
            "split, and there is no test split.")
    return FerData(x, y, source, str(path), [note], from_training=("train", "val"))


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded split that keeps each class's share in both parts."""
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        held.append(members[: int(round(fraction * len(members)))])
    held = np.sort(np.concatenate(held))
    kept = np.setdiff1d(np.arange(len(labels)), held)
    return kept, held


def _at(path: Path, row: int) -> str:
    """'file, row r (line l)' for the 0-based data row `row` of a CSV with a header."""
    return f"{path}, row {row + 1} (line {row + 2})"


def _parse_labels(column: pd.Series, path: Path, name: str) -> np.ndarray:
    """Labels 0..6 as int64, or a DataError naming the first bad row."""
    text = column.str.strip()
    valid = text.isin([str(i) for i in range(len(CLASSES))])
    if not valid.all():
        row = int(np.argmax(~valid.to_numpy()))
        raise DataError(
            f"{_at(path, row)}: {name} {text.iloc[row]!r} is not a class label 0-{len(CLASSES) - 1}."
        )
    return text.astype(np.int64).to_numpy()


def parse_pixels(column: pd.Series, path: Path) -> np.ndarray:
    """Space-separated grey levels to an (N, 48, 48) uint8 array, or a DataError naming the row."""
    text = column.str.strip()
    counts = text.str.count(" ").to_numpy() + (text.str.len().to_numpy() > 0)
    bad = np.flatnonzero(counts != N_PIXELS)
    if bad.size:
        row = int(bad[0])
        raise DataError(
            f"{_at(path, row)}: {counts[row]} pixel values, expected {N_PIXELS} "
            f"({IMAGE_SIZE}x{IMAGE_SIZE}, separated by single spaces)."
        )
    table = pd.read_csv(io.StringIO("\n".join(text)), sep=" ", header=None, engine="c")
    values = table.to_numpy()
    if table.dtypes.eq(np.int64).all() and values.min() >= 0 and values.max() <= 255:
        return values.astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
    raw = pd.read_csv(io.StringIO("\n".join(text)), sep=" ", header=None, dtype=str, keep_default_na=False)
    values = raw.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad_value = ~np.isfinite(values) | (values != np.round(values)) | (values < 0) | (values > 255)
    row, col = map(int, np.argwhere(bad_value)[0])
    raise DataError(
        f"{_at(path, row)}, pixel {col + 1}: {raw.iat[row, col]!r} is not an integer grey level 0-255."
    )


_PREFIX = re.compile(r"^(Training|PublicTest|PrivateTest)_", re.IGNORECASE)
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm"}


def read_image_folder(root: Path, seed: int = 0) -> FerData:
    """Read the Kaggle image tree `train/<class>/*.jpg`, `test/<class>/*.jpg`."""
    from PIL import Image, UnidentifiedImageError

    if not (root / "train").is_dir():
        raise DataError(
            f"{root}: no recognisable FER2013 layout; expected train/<class>/*.jpg and test/<class>/*.jpg "
            f"with class folders named {', '.join(CLASSES)}."
        )
    items: dict[str, list[tuple[np.ndarray, int]]] = {s: [] for s in SPLITS}
    unprefixed_test = False
    for top in ("train", "test"):
        folder = root / top
        if not folder.is_dir():
            continue
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            if class_dir.name.lower() not in CLASSES:
                raise DataError(f"{class_dir}: folder name is not one of the classes {', '.join(CLASSES)}.")
            label = CLASSES.index(class_dir.name.lower())
            for file in sorted(class_dir.iterdir()):
                if file.suffix.lower() not in _IMAGE_SUFFIXES:
                    raise DataError(f"{file}: not an image file (expected one of {sorted(_IMAGE_SUFFIXES)}).")
                try:
                    with Image.open(file) as im:
                        image = np.asarray(im.convert("L"))
                except (UnidentifiedImageError, OSError) as err:
                    raise DataError(f"{file}: cannot be read as an image ({err}).") from None
                if image.shape != (IMAGE_SIZE, IMAGE_SIZE):
                    raise DataError(f"{file}: image is {image.shape[1]}x{image.shape[0]}, expected 48x48.")
                match = _PREFIX.match(file.name)
                if match:
                    split = USAGE_TO_SPLIT[{u.lower(): u for u in USAGE_TO_SPLIT}[match.group(1).lower()]]
                else:
                    split = "train" if top == "train" else "test"
                    unprefixed_test |= top == "test"
                items[split].append((image, label))
    if not items["train"]:
        raise DataError(f"{root / 'train'}: holds no images in class folders.")
    x = {s: np.array([i for i, _ in items[s]], dtype=np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE) for s in SPLITS}
    y = {s: np.array([label for _, label in items[s]], dtype=np.int64) for s in SPLITS}
    notes, from_training = [], ("train",)
    if not len(y["val"]):
        from_training = ("train", "val")
        keep, held = stratified_split(y["train"], VAL_FRACTION, seed)
        x["val"], y["val"] = x["train"][held], y["train"][held]
        x["train"], y["train"] = x["train"][keep], y["train"][keep]
        notes.append(f"No PublicTest_ files: {VAL_FRACTION:.0%} of train, stratified with seed {seed}, validates.")
    if unprefixed_test:
        notes.append("test/ files without a PublicTest_/PrivateTest_ prefix form the test split.")
    return FerData(x, y, "image-folder", str(root), notes, from_training)


def to_dataset(x: np.ndarray, y: np.ndarray, batch_size: int = 128, shuffle: bool = False,
               seed: int = 0, augment=None):
    """A tf.data pipeline of scaled (N, 48, 48, 1) float32 images and integer labels (or (N, 7) target rows)."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((scale(x), y.astype(np.float32 if y.ndim == 2 else np.int32)))
    if shuffle:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if augment is not None:
        ds = ds.map(lambda a, b: (augment(a, training=True), b), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def scale(x: np.ndarray) -> np.ndarray:
    """uint8 images (N, 48, 48) to the model's float32 input (N, 48, 48, 1) in [0, 1]."""
    return (x.astype(np.float32) / 255.0)[..., None]
