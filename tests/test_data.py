"""Loaders for every supported format, every bad-input case, lookup order and the synthetic faces."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from conftest import pixels_text, write_kaggle_csv
from PIL import Image

from fer_utils import data
from fer_utils.data import CLASSES, DataError
from fer_utils.synthetic import make_synthetic


def test_kaggle_csv_splits_by_usage(kaggle_csv, small_images):
    images, labels = small_images
    loaded = data.read(kaggle_csv)
    assert loaded.source == "kaggle-csv"
    assert [len(loaded.y[s]) for s in data.SPLITS] == [11, 5, 5]
    np.testing.assert_array_equal(loaded.x["train"], images[:11])
    np.testing.assert_array_equal(loaded.y["val"], labels[11:16])
    np.testing.assert_array_equal(loaded.x["test"], images[16:])
    assert loaded.counts().loc["total"].tolist() == [11, 5, 5]


def test_gzipped_kaggle_csv_reads_the_same(tmp_path, kaggle_csv):
    gz = tmp_path / "fer2013.csv.gz"
    gz.write_bytes(gzip.compress(kaggle_csv.read_bytes()))
    plain, packed = data.read(kaggle_csv), data.read(gz)
    assert plain.fingerprint == packed.fingerprint


def test_course_csv_gets_a_stratified_seeded_validation_split(tmp_path):
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(7), 20)
    images = rng.integers(0, 256, (len(labels), 48, 48), dtype=np.uint8)
    path = tmp_path / "train.csv"
    path.write_text("label,feature\n" + "".join(f"{y},{pixels_text(i)}\n" for i, y in zip(images, labels)))
    first, again, other = data.read(path, seed=0), data.read(path, seed=0), data.read(path, seed=1)
    assert first.source == "course-csv"
    assert np.bincount(first.y["val"]).tolist() == [2] * 7  # 10% of each class
    assert len(first.y["train"]) == 126 and len(first.y["test"]) == 0
    assert first.fingerprint == again.fingerprint != other.fingerprint
    assert "no Usage column" in first.describe()


def _write_image_tree(root: Path, names: dict[str, list[str]], size=(48, 48)) -> None:
    rng = np.random.default_rng(0)
    for rel_dir, files in names.items():
        (root / rel_dir).mkdir(parents=True, exist_ok=True)
        for name in files:
            Image.fromarray(rng.integers(0, 256, size[::-1], dtype=np.uint8)).save(root / rel_dir / name)


def test_image_folder_uses_file_name_prefixes(tmp_path):
    _write_image_tree(tmp_path, {
        "train/happy": ["Training_1.png", "Training_2.png"], "train/sad": ["Training_3.png"],
        "test/happy": ["PublicTest_4.png", "PrivateTest_5.png"], "test/angry": ["PublicTest_6.png"],
    })
    loaded = data.read(tmp_path)
    assert loaded.source == "image-folder"
    assert sorted(loaded.y["train"].tolist()) == [CLASSES.index("happy")] * 2 + [CLASSES.index("sad")]
    assert sorted(loaded.y["val"].tolist()) == [CLASSES.index("angry"), CLASSES.index("happy")]
    assert loaded.y["test"].tolist() == [CLASSES.index("happy")]


def test_image_folder_without_prefixes_splits_validation_from_train(tmp_path):
    _write_image_tree(tmp_path, {f"train/{c}": [f"{i}.png" for i in range(10)] for c in CLASSES}
                      | {"test/fear": ["a.png", "b.png"]})
    loaded = data.read(tmp_path)
    assert len(loaded.y["val"]) == 7 and len(loaded.y["train"]) == 63
    assert loaded.y["test"].tolist() == [CLASSES.index("fear")] * 2
    assert any("stratified" in note for note in loaded.notes)


@pytest.mark.parametrize("mutate, message", [
    (lambda rows: rows.__setitem__(2, rows[2].replace(" 0 ", " 0 7 ", 1) if " 0 " in rows[2] else rows[2] + " 7"),
     "row 2 (line 3): 2305 pixel values"),
    (lambda rows: rows.__setitem__(3, rows[3].rsplit(" ", 1)[0]), "row 3 (line 4): 2303 pixel values"),
    (lambda rows: rows.__setitem__(1, rows[1].replace(",", ",1.5 ", 1).rsplit(" ", 1)[0]),
     "row 1 (line 2), pixel 1: '1.5'"),
    (lambda rows: rows.__setitem__(4, rows[4].replace(",", ",300 ", 1).rsplit(" ", 1)[0]),
     "row 4 (line 5), pixel 1: '300'"),
    (lambda rows: rows.__setitem__(5, rows[5].replace(",", ",x ", 1).rsplit(" ", 1)[0]),
     "row 5 (line 6), pixel 1: 'x'"),
    (lambda rows: rows.__setitem__(2, "9" + rows[2][1:]), "row 2 (line 3): emotion '9'"),
    (lambda rows: rows.__setitem__(6, rows[6].replace("Training", "Validation")), "row 6 (line 7): Usage 'Validation'"),
    (lambda rows: rows.__setitem__(0, "label,pixels,Usage"), "match none of the forms"),
])
def test_bad_kaggle_rows_are_named(kaggle_csv, mutate, message):
    rows = kaggle_csv.read_text().splitlines()
    mutate(rows)
    kaggle_csv.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError) as err:
        data.read(kaggle_csv)
    assert str(kaggle_csv) in str(err.value)
    assert message in str(err.value)


def test_empty_and_truncated_files(tmp_path, kaggle_csv):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        data.read(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text("emotion,pixels,Usage\n")
    with pytest.raises(DataError, match="no rows"):
        data.read(header_only)
    packed = gzip.compress(kaggle_csv.read_bytes())
    truncated = tmp_path / "cut.csv.gz"
    truncated.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match="truncated"):
        data.read(truncated)


def test_bad_images_are_named(tmp_path):
    _write_image_tree(tmp_path, {"train/happy": ["Training_1.png"], "train/sad": ["Training_2.png"]})
    _write_image_tree(tmp_path, {"train/sad": ["Training_big.png"]}, size=(64, 48))
    with pytest.raises(DataError, match=r"Training_big.png: image is 64x48, expected 48x48"):
        data.read(tmp_path)
    (tmp_path / "train/sad/Training_big.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"Training_big.png: cannot be read as an image"):
        data.read(tmp_path)
    (tmp_path / "train/sad/Training_big.png").unlink()
    (tmp_path / "train/smug").mkdir()
    with pytest.raises(DataError, match="smug: folder name is not one of the classes"):
        data.read(tmp_path)


def test_folder_without_layout_is_refused(tmp_path):
    (tmp_path / "pictures").mkdir()
    with pytest.raises(DataError, match="no recognisable FER2013 layout"):
        data.read(tmp_path)


def _write_csv(path: Path, header: str, rows: list[str]) -> Path:
    """A CSV as downloaded: plain, or gzipped when the name ends in .gz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join([header, *rows]) + "\n"
    path.write_bytes(gzip.compress(text.encode())) if path.suffix == ".gz" else path.write_text(text)
    return path


def _write_form(form: str, folder: Path, images, labels, usages) -> Path:
    """`images` in one of Kaggle's download forms under `folder`; returns the file `locate` should find."""
    rows = [(y, pixels_text(i), u) for i, y, u in zip(images, labels, usages)]
    if form == "icml_face_data.csv":  # spaced header, another column order
        return _write_csv(folder / form, "emotion, Usage, pixels", [f"{y},{u},{p}" for y, p, u in rows])
    if form == "train.csv+test.csv":  # the challenge: Training rows, then PublicTest and PrivateTest in order
        _write_csv(folder / "test.csv", "emotion,pixels", [f"{y},{p}" for y, p, u in rows if u != "Training"])
        return _write_csv(folder / "train.csv", "emotion,pixels", [f"{y},{p}" for y, p, u in rows if u == "Training"])
    if form.startswith("fer2013/"):  # fer2013.tar.gz unpacked: its README and .bib come along
        for extra in ("README", "fer2013.bib"):
            _write_csv(folder / "fer2013" / extra, "text", [])
    return _write_csv(folder / form, "emotion,pixels,Usage", [f"{y},{p},{u}" for y, p, u in rows])


@pytest.mark.parametrize("form", ["fer2013.csv", "fer2013.csv.gz", "icml_face_data.csv", "fer2013/fer2013.csv",
                                  "fer2013/fer2013.csv.gz", "train.csv+test.csv"])
def test_every_kaggle_form_loads_from_data_with_its_splits(tmp_path, monkeypatch, small_images, form):
    from fer_utils import shipped

    images, labels = small_images  # labels 0,0,0,1,1,1,...,6,6,6
    usages = ["Training"] * 11 + ["PublicTest"] * 5 + ["PrivateTest"] * 5
    expected = _write_form(form, tmp_path / "data", images, labels, usages)
    monkeypatch.setattr(data, "DATA_DIR", tmp_path / "data")
    monkeypatch.delenv("FER_DATA", raising=False)
    assert data.locate() == expected
    assert data.locate(expected.parent) == expected  # a folder given (data/fer2013 with its README and .bib)
    loaded = data.load(verbose=False)
    assert loaded.source == "kaggle-csv" and loaded.path == str(expected)
    assert loaded.counts().to_dict("list") == {"train": [3, 3, 3, 2, 0, 0, 0, 11], "val": [0, 0, 0, 1, 3, 1, 0, 5],
                                               "test": [0, 0, 0, 0, 0, 2, 3, 5]}
    np.testing.assert_array_equal(loaded.x["val"], images[11:16])
    monkeypatch.setattr(shipped, "OFFICIAL_TRAINING", (3, 3, 3, 2, 0, 0, 0))  # this fixture as the official release
    monkeypatch.setattr(shipped, "OFFICIAL_HELD_OUT", 5)
    assert shipped.is_official_release(loaded)


@pytest.mark.parametrize("test_csv", ["pixels", None])
def test_challenge_train_csv_without_test_labels_carves_validation(tmp_path, test_csv):
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(7), 20)
    images = rng.integers(0, 256, (len(labels), 48, 48), dtype=np.uint8)
    rows = [f"{y},{pixels_text(i)}" for i, y in zip(images, labels)]
    train = _write_csv(tmp_path / "train.csv", "emotion,pixels", rows)
    if test_csv:
        _write_csv(tmp_path / "test.csv", test_csv, [pixels_text(i) for i in images[:4]])
    loaded = data.read(train)
    assert loaded.source == "kaggle-csv"
    assert loaded.counts().to_dict("list") == {"train": [18] * 7 + [126], "val": [2] * 7 + [14], "test": [0] * 8}
    course = _write_csv(tmp_path / "course" / "train.csv", "label,feature", rows)
    assert loaded.fingerprint == data.read(course).fingerprint  # the same split as the course's train.csv
    assert ("test.csv is unlabelled" if test_csv else "There is no test.csv beside train.csv") in loaded.describe()


@pytest.mark.parametrize("names, culprit", [
    (["fer2013.csv", "notes.txt"], "notes.txt"), (["fer2013.tar.gz"], "fer2013.tar.gz"), (["test.csv"], "test.csv"),
    (["fer2013.csv", "archive/x.csv"], "archive"),
])
def test_an_unrecognised_file_in_data_stops_loading(tmp_path, monkeypatch, kaggle_csv, names, culprit):
    folder = tmp_path / "data"
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(kaggle_csv.read_bytes())
    monkeypatch.setattr(data, "DATA_DIR", folder)
    monkeypatch.delenv("FER_DATA", raising=False)
    with pytest.raises(DataError) as err:
        data.load(verbose=False)
    assert str(err.value).startswith(f"{folder / culprit}: not a form of FER2013")
    assert "Accepted: fer2013.csv or icml_face_data.csv" in str(err.value) and "image tree" in str(err.value)


def test_only_readme_and_hidden_files_mean_the_stand_in(tmp_path, monkeypatch):
    (tmp_path / "README.md").write_text("# Put FER2013 here")
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    monkeypatch.setattr(data, "DATA_DIR", tmp_path)
    monkeypatch.delenv("FER_DATA", raising=False)
    assert data.locate() is None


def test_lookup_order(tmp_path, monkeypatch, kaggle_csv):
    monkeypatch.setattr(data, "DATA_DIR", tmp_path / "empty_data_dir")
    monkeypatch.delenv("FER_DATA", raising=False)
    assert data.locate() is None  # nothing anywhere: the synthetic stand-in
    monkeypatch.setattr(data, "DATA_DIR", kaggle_csv.parent)
    assert data.locate() == kaggle_csv  # data/fer2013.csv
    monkeypatch.setenv("FER_DATA", str(tmp_path / "missing.csv"))
    with pytest.raises(DataError, match="FER_DATA is set to .*missing.csv.*does not exist"):
        data.locate()


def test_fer_data_env_wins(tmp_path, monkeypatch, kaggle_csv):
    other = write_kaggle_csv(tmp_path / "other.csv.gz", np.zeros((2, 48, 48), np.uint8), [0, 1],
                             ["Training", "PublicTest"], gz=True)
    monkeypatch.setattr(data, "DATA_DIR", kaggle_csv.parent)
    monkeypatch.setenv("FER_DATA", str(other))
    assert len(data.load(verbose=False).y["train"]) == 1


def test_synthetic_is_deterministic_and_labelled_loudly():
    a, b, c = make_synthetic(seed=5, scale=0.05), make_synthetic(seed=5, scale=0.05), make_synthetic(seed=6, scale=0.05)
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert a.is_synthetic and "SYNTHETIC" in a.describe()
    assert a.x["train"].shape[1:] == (48, 48) and a.x["train"].dtype == np.uint8
    assert set(np.unique(a.y["train"])) == set(range(7))
    assert 20 < a.x["train"].mean() < 235 and a.x["train"].std() > 20


def test_synthetic_classes_differ_but_overlap():
    """Class means differ (learnable), yet fear and surprise stay closer than happy and surprise."""
    d = make_synthetic(seed=0, scale=0.3)
    means = {c: d.x["train"][d.y["train"] == i].astype(float).mean(axis=0) for i, c in enumerate(CLASSES)}
    dist = lambda a, b: float(np.abs(means[a] - means[b]).mean())  # noqa: E731
    assert dist("fear", "surprise") < dist("happy", "surprise")
    assert dist("sad", "neutral") < dist("happy", "neutral")
    assert min(dist(a, b) for a in CLASSES for b in CLASSES if a != b) > 0.2


def test_fingerprint_changes_with_one_pixel(kaggle_csv):
    loaded = data.read(kaggle_csv)
    before = loaded.fingerprint
    loaded.x["val"][0, 0, 0] ^= 1
    assert loaded.fingerprint != before


def test_to_dataset_scales_shuffles_with_seed_and_batches(small_images):
    images, labels = small_images
    batches = list(data.to_dataset(images, labels, batch_size=8))
    assert [b[0].shape[0] for b in batches] == [8, 8, 5]
    first = batches[0][0].numpy()
    assert first.shape == (8, 48, 48, 1) and first.dtype == np.float32 and 0 <= first.min() <= first.max() <= 1
    np.testing.assert_allclose(first[..., 0], images[:8] / 255.0, rtol=1e-6)
    order = lambda seed: np.concatenate([b[1].numpy() for b in data.to_dataset(images, np.arange(21), 8, True, seed)])  # noqa: E731
    assert order(1).tolist() == order(1).tolist() != order(2).tolist()
    assert sorted(order(1).tolist()) == list(range(21))
    targets = np.random.default_rng(0).random((21, 7))
    rows = np.concatenate([b[1].numpy() for b in data.to_dataset(images, targets, 8)])
    assert rows.dtype == np.float32 and np.allclose(rows, targets)  # target rows (distillation) pass through


def test_held_out_split_is_test_unless_empty(tmp_path, kaggle_csv):
    assert data.read(kaggle_csv).held_out == "test"
    rows = [r for r in kaggle_csv.read_text().splitlines() if "PrivateTest" not in r]
    kaggle_csv.write_text("\n".join(rows) + "\n")
    assert data.read(kaggle_csv).held_out == "val"


def test_a_data_file_is_parsed_once_and_then_read_back_identically(kaggle_csv, tmp_path, monkeypatch):
    from fer_utils import data as fer_data

    first = fer_data.read_parsed(kaggle_csv, cache_dir=tmp_path / "parsed")
    (entry,) = (tmp_path / "parsed").iterdir()
    monkeypatch.setattr(fer_data, "read", lambda *a, **k: pytest.fail("a parsed file must not be parsed again"))
    again = fer_data.read_parsed(kaggle_csv, cache_dir=tmp_path / "parsed")
    assert again.fingerprint == first.fingerprint and (again.source, again.path, again.notes) == (
        first.source, first.path, first.notes)
    monkeypatch.undo()
    kaggle_csv.write_text(kaggle_csv.read_text().replace("PrivateTest", "PublicTest"))  # the file changes
    changed = fer_data.read_parsed(kaggle_csv, cache_dir=tmp_path / "parsed")
    assert len(changed.y["val"]) == 10 and len(list((tmp_path / "parsed").iterdir())) == 2


def test_the_parsed_copy_of_the_challenge_train_csv_follows_its_test_csv(tmp_path, small_images):
    images, labels = small_images
    train = _write_form("train.csv+test.csv", tmp_path, images, labels, ["Training"] * 11 + ["PublicTest"] * 10)
    assert len(data.read_parsed(train, cache_dir=tmp_path / "parsed").y["val"]) == 5
    _write_csv(tmp_path / "test.csv", "pixels", [pixels_text(i) for i in images[11:]])  # labels dropped
    assert len(data.read_parsed(train, cache_dir=tmp_path / "parsed").y["val"]) == 0  # carved: 10% of 2-3 rounds to 0


def test_the_parsed_copy_is_found_by_content_so_a_copied_file_is_not_parsed_again(kaggle_csv, tmp_path, monkeypatch):
    from fer_utils import data as fer_data

    first = fer_data.read_parsed(kaggle_csv, cache_dir=tmp_path / "parsed")
    moved = tmp_path / "elsewhere" / kaggle_csv.name
    moved.parent.mkdir()
    moved.write_bytes(kaggle_csv.read_bytes())  # a new path and a new modification time, the same bytes
    assert fer_data.source_identity(moved) == fer_data.source_identity(kaggle_csv)
    monkeypatch.setattr(fer_data, "read", lambda *a, **k: pytest.fail("the same bytes must not be parsed again"))
    again = fer_data.read_parsed(moved, cache_dir=tmp_path / "parsed")
    assert again.fingerprint == first.fingerprint and again.path == str(moved)


def test_from_training_names_the_splits_made_of_training_rows(tmp_path, kaggle_csv, small_images):
    assert data.read(kaggle_csv).from_training == ("train",)
    images, labels = small_images
    train = _write_form("train.csv+test.csv", tmp_path / "challenge", images, labels, ["Training"] * 21)
    (tmp_path / "challenge" / "test.csv").unlink()
    assert data.read(train).from_training == ("train", "val")  # validation carved out of Training
