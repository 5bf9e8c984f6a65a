"""Evaluation maths on hand-made predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fer_utils.evaluation import Evaluation, compare_runs, ensemble, evaluate, evaluate_views, predict, shifted

# 10 examples: angry(0) x4, disgust(1) x2, happy(3) x4.
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 3, 3, 3, 3])
Y_PRED = np.array([0, 0, 0, 1, 0, 0, 3, 3, 3, 6])


def test_accuracy_and_confusion_counts():
    ev = Evaluation(Y_TRUE, Y_PRED)
    assert ev.n == 10 and ev.accuracy == pytest.approx(0.6)
    c = ev.confusion
    assert c.loc["angry", "angry"] == 3 and c.loc["angry", "disgust"] == 1
    assert c.loc["disgust", "angry"] == 2 and c.loc["happy", "neutral"] == 1
    assert int(c.to_numpy().sum()) == 10
    norm = ev.confusion_normalized
    assert norm.loc["disgust", "angry"] == pytest.approx(1.0)
    assert norm.loc["angry"].sum() == pytest.approx(1.0) and norm.loc["fear"].sum() == 0


def test_per_class_scores_and_macro_f1():
    table = Evaluation(Y_TRUE, Y_PRED).per_class
    # angry: tp 3, predicted 5, true 4 -> precision 0.6, recall 0.75, F1 2/3
    assert table.loc["angry", "precision"] == pytest.approx(0.6)
    assert table.loc["angry", "recall"] == pytest.approx(0.75)
    assert table.loc["angry", "f1"] == pytest.approx(2 / 3)
    assert table.loc["disgust", "f1"] == 0 and table.loc["happy", "precision"] == 1
    assert table.loc["happy", "f1"] == pytest.approx(2 * 0.75 / 1.75)
    expected = (2 / 3 + 0 + 2 * 0.75 / 1.75) / 3  # classes absent from y_true do not count
    assert Evaluation(Y_TRUE, Y_PRED).macro_f1 == pytest.approx(expected)


def test_summary_is_json_ready():
    summary = Evaluation(Y_TRUE, Y_PRED).summary()
    assert json.loads(json.dumps(summary)) == summary  # plain Python values: JSON gives them back unchanged
    macro_f1 = (2 / 3 + 2 * 0.75 / 1.75) / 3  # as in test_per_class_scores_and_macro_f1
    assert summary == {"n": 10, "accuracy": pytest.approx(0.6), "macro_f1": pytest.approx(macro_f1),
                       "recall": {"angry": 0.75, "disgust": 0.0, "fear": 0.0, "happy": 0.75, "sad": 0.0,
                                  "surprise": 0.0, "neutral": 0.0}}


def test_compare_runs_scores_each_run():
    from types import SimpleNamespace

    class Fixed:
        """A 'model' that predicts class 0 for a normal image and class 3 for a mirrored one."""

        def predict(self, images, batch_size=None, verbose=0):
            probs = np.zeros((len(images), 7))
            mirrored = images[:, 0, 0, 0] < images[:, 0, -1, 0]
            probs[~mirrored, 0], probs[mirrored, 3] = 1, 1
            return probs

    x = np.zeros((4, 48, 48), np.uint8)
    x[:, 0, 0] = 255  # bright top-left pixel: predicted 0; its mirror image: predicted 3 -> TTA ties, argmax 0
    meta = {"epochs_run": 5, "best_epoch": 4, "seconds": 120.0, "device": "CPU"}
    table = compare_runs({"a": SimpleNamespace(model=Fixed(), meta=meta)}, x, np.array([0, 0, 3, 3]))
    assert table.loc["a", "accuracy"] == pytest.approx(0.5)
    assert table.loc["a", "accuracy (10 views)"] == pytest.approx(0.5)  # shifted views keep the bright corner
    assert table.loc["a", "minutes"] == pytest.approx(2.0) and table.loc["a", "epochs"] == 5


def test_ensemble_reports_agreement_shared_mistakes_and_the_average():
    y = np.array([0, 1, 2, 3])
    a = np.eye(7)[[0, 1, 5, 5]] * 0.6 + 0.4 / 7  # right on 0 and 1
    b = np.eye(7)[[0, 4, 2, 6]] * 0.9 + 0.1 / 7  # right on 0 and 2, more confident
    result = ensemble([a, b], y)
    assert result["models"] == 2 and result["agreement"] == 0.25  # both say 0 on the first image only
    assert result["all_wrong"] == 0.25  # the last image: 5 and 6, truth 3
    assert result["accuracy"] == 0.5  # the confident model wins every disagreement: 0, 4, 2, 6
    assert ensemble([a], y)["accuracy"] == Evaluation(y, a.argmax(1)).accuracy and ensemble([a], y)["agreement"] == 1


def test_shifted_moves_the_image_and_repeats_the_edge():
    image = np.arange(16.0).reshape(1, 4, 4, 1)
    down = shifted(image, 1, 0)[0, :, :, 0]
    np.testing.assert_array_equal(down[1:], image[0, :3, :, 0])
    np.testing.assert_array_equal(down[0], image[0, 0, :, 0])  # the uncovered top row repeats the old top row
    left = shifted(image, 0, -2)[0, :, :, 0]
    np.testing.assert_array_equal(left[:, :2], image[0, :, 2:, 0])
    np.testing.assert_array_equal(left[:, 3], image[0, :, 3, 0])
    assert shifted(image, 1, -1).shape == image.shape


def test_predict_averages_the_views_it_is_asked_for():
    class Column:
        """A 'model' whose class-0 probability is how bright column 11 is, the last of a bright left band."""

        def __init__(self):
            self.views = 0

        def predict(self, images, batch_size=None, verbose=0):
            self.views += 1
            bright = images[:, :, 11, 0].mean(axis=1)
            return np.stack([bright, 1 - bright] + [np.zeros_like(bright)] * 5, axis=1)

    x = np.zeros((2, 48, 48), np.uint8)
    x[:, :, :12] = 255  # columns 0-11 bright
    # Mirrored, the band is at the right; moved left one pixel, column 11 shows the dark column 12.
    for tta, shift, views, class_0 in ((False, 0, 1, 1.0), (True, 0, 2, 0.5), (False, 1, 5, 0.8), (True, 1, 10, 0.4)):
        model = Column()
        probs = predict(model, x, tta=tta, shift=shift)
        assert model.views == views and probs[0, 0] == pytest.approx(class_0), (tta, shift)
    model, y = Column(), np.array([0, 1])
    scores = evaluate_views(model, x, y)
    assert model.views == 10  # each view predicted once for all three scores
    for name, tta, shift in (("one", False, 0), ("flip", True, 0), ("ten", True, 1)):
        np.testing.assert_array_equal(scores[name].y_pred, evaluate(Column(), x, y, tta=tta, shift=shift).y_pred)


def tiny_model(activation: str = "relu", seed: int = 0):
    """A small Keras classifier of 48x48 images, its weights drawn from `seed`."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Conv2D(2, 3, activation=activation),
                             keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(7, activation="softmax")])


def test_model_digest_follows_weights_and_settings_not_names():
    from fer_utils.evaluation import model_digest

    digest = model_digest(tiny_model())
    assert digest == model_digest(tiny_model())  # rebuilt: new layer names, same outputs
    assert digest != model_digest(tiny_model(seed=1))
    assert digest != model_digest(tiny_model(activation="tanh"))  # same weights, other outputs
    changed = tiny_model()
    changed.layers[-1].bias.assign(changed.layers[-1].bias + 1e-3)
    assert digest != model_digest(changed)
    assert model_digest(object()) is None


def test_a_views_prediction_is_kept_and_reused_only_for_the_same_model_and_images(tmp_path, monkeypatch):
    from fer_utils.evaluation import view_probabilities

    rng = np.random.default_rng(0)
    x, other = (rng.integers(0, 256, (5, 48, 48), dtype=np.uint8) for _ in range(2))
    model = tiny_model()
    first = view_probabilities(model, x, tta=True, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 2 and not list(tmp_path.glob("*partial*"))
    rebuilt = tiny_model()  # the same model built again, as a rerun chapter does
    for m in (model, rebuilt):
        monkeypatch.setattr(m, "predict", lambda *a, **k: pytest.fail("predicted again"))
    again = view_probabilities(model, x, tta=True, cache_dir=tmp_path)
    for kept, computed in zip(again, first):
        np.testing.assert_array_equal(kept, computed)
    np.testing.assert_array_equal(view_probabilities(rebuilt, x, cache_dir=tmp_path)[0], first[0])
    monkeypatch.undo()
    view_probabilities(model, other, cache_dir=tmp_path)
    view_probabilities(tiny_model(seed=1), x, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 4  # other images, another model: each predicted and kept
    view_probabilities(model, x, cache_dir=None)
    assert len(list(tmp_path.glob("*.npy"))) == 4
