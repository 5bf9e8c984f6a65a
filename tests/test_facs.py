"""fer_utils.facs: the prototype action units, their names and regions, and the words chapters 3 and 4 take."""

from fer_utils import explain, facs
from fer_utils.data import CLASSES


def test_every_class_has_a_prototype_with_named_action_units_in_known_regions():
    assert set(facs.ACTION_UNITS) == set(CLASSES)
    for units in facs.ACTION_UNITS.values():
        assert all(u in facs.AU_NAMES and facs.AU_REGION[u] in explain.REGIONS for u in units)
    assert facs.ACTION_UNITS["neutral"] == ()


def test_shared_actions():
    assert facs.shared_actions("fear", "surprise") == (
        "inner brow raiser (AU 1), outer brow raiser (AU 2), upper lid raiser (AU 5) and jaw drop (AU 26)")
    assert facs.shared_actions("angry", "sad") == "brow lowerer (AU 4)"
    assert facs.shared_actions("happy", "sad") == "no action unit"
    assert facs.shared_actions("sad", "neutral") == "no action unit"  # the stand-in's common pair


def test_action_regions():
    assert facs.action_regions("happy") == ("eyes", "mouth")
    assert facs.action_regions("disgust") == ("nose", "mouth")
    assert facs.action_regions("neutral") == ()
