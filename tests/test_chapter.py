"""fer_utils.chapter's pure helpers; the chapters' facts functions run in full when the book builds."""

import numpy as np
import pandas as pd
import pytest

from fer_utils import chapter, original, training
from fer_utils.data import CLASSES


def test_class_spread_is_relative_to_the_mean_over_classes():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(len(CLASSES)), 50)
    scale = np.where(np.arange(len(CLASSES)) == CLASSES.index("fear"), 3.0, 1.0)[y]
    features = rng.normal(size=(len(y), 8)) * scale[:, None]
    spread = chapter.class_spread(features, y)
    assert spread.idxmax() == "fear" and spread.mean() == pytest.approx(1.0)


def test_action_table_names_every_class():
    table = chapter.action_table()
    assert list(table.index) == list(CLASSES)
    assert table.loc["happy", "action units"] == "AU6 cheek raiser and AU12 lip corner puller"
    assert table.loc["neutral", "regions"] == "-"


def test_versus_original_sets_the_last_epoch_beside_the_original():
    history = pd.DataFrame({"loss": [1.2, 0.9], "accuracy": [0.5, 0.6], "val_loss": [1.1, 1.0],
                            "val_accuracy": [0.55, 0.58]}, index=pd.Index([1, 2], name="epoch"))
    run = training.Run(None, history, {"epochs_run": 2})
    table = chapter.versus_original(run)
    assert table.iloc[0].to_dict() == {"loss": 0.9, "accuracy": 0.6, "val_loss": 1.0, "val_accuracy": 0.58}
    assert table.iloc[1].to_dict() == original.FINAL_EPOCH
    assert table.index[0] == "this build, epoch 2"


def test_recipe_facts_refuse_a_recipe_the_chapter_does_not_describe():
    report, augmented = training.RECIPES["report"], training.RECIPES["augmented"]
    assert chapter.recipe_facts(report, augmented)["smoothing"] == augmented.label_smoothing
    with pytest.raises(AssertionError, match="batch"):
        chapter.recipe_facts(report, augmented.replace(batch_size=64))
    with pytest.raises(AssertionError, match="no longer"):
        chapter.recipe_facts(report, augmented.replace(label_smoothing=0.0))


def test_recipe_extras_in_words():
    import dataclasses

    assert chapter.recipe_extras(dataclasses.asdict(training.RECIPES["report"])) == "nothing"
    words = chapter.recipe_extras(dataclasses.asdict(training.RECIPES["augmented"]))
    assert words.startswith("standardised inputs") and "label smoothing of 0.1" in words
