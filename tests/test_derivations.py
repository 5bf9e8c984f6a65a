"""Chapter 6 derivations: correct closed forms pass, wrong ones are rejected, failures raise."""

import pytest
import sympy as sp

from fer_utils import derivations as d


@pytest.fixture(scope="module")
def bn4() -> d.Derivation:
    return d.batchnorm_derivation(4)


@pytest.fixture(scope="module")
def bn_general() -> d.Derivation:
    return d.batchnorm_derivation(None)


# --- verdicts ------------------------------------------------------------------------------


def test_compare_accepts_identity_and_rejects_with_counterexample():
    x = sp.Symbol("x", positive=True)
    assert d.compare("square", "", sp.sqrt(x) ** 2, x).passed
    wrong = d.compare("off by one", "", x + 1, x)
    assert not wrong.passed and "is 1 at a random point" in wrong.detail


def test_require_returns_passing_and_raises_naming_failures():
    good = d.NumericCheck("good", 3, 0.0, 0.0)
    bad = d.NumericCheck("bad", 3, 0.5, 1e-9)
    assert d.require([good]) == [good]
    with pytest.raises(d.DerivationError, match="1 of 2 checks failed:\n  - bad"):
        d.require([good, bad])
    assert not d.NumericCheck("nan", 3, float("nan"), 1.0).passed
    assert not d.NumericCheck("empty", 0, 0.0, 1.0).passed


def test_sum_reduction_rules():
    m, j, n, k = sp.Symbol("m", integer=True, positive=True), *sp.symbols("j n k", integer=True)
    x = sp.IndexedBase("x")
    assert d._reduce_sums(sp.Sum(sp.KroneckerDelta(j, k) * x[j], (j, 1, m))) == x[k]
    assert d._reduce_sums(sp.Sum(3 * x[k], (j, 1, m))) == 3 * m * x[k]
    # d/dx_k of the variance is 2 (x_k - mu) / m; SymPy 1.14's simplify gets the sign wrong when the
    # nested sums share a dummy, so the forward definitions never reuse one.
    mean = sp.Sum(x[n], (n, 1, m)) / m
    dvar = sp.diff(sp.Sum((x[j] - mean) ** 2, (j, 1, m)) / m, x[k])
    reduced = d._reduce_sums(dvar)
    (total,) = reduced.atoms(sp.Sum)
    assert sp.expand(reduced - 2 * (x[k] - total / m) / m) == 0


# --- 6-1 convolution -----------------------------------------------------------------------


def test_count_positions_by_hand():
    assert d.count_positions(5, 3, 1, 0) == 3  # offsets 0, 1, 2
    assert d.count_positions(5, 3, 2, 1) == 3  # padded 7: offsets 0, 2, 4
    assert d.count_positions(48, 3, 1, 1) == 48  # 'same' padding
    assert d.count_positions(4, 5, 1, 0) == 0  # kernel does not fit


def test_conv_formula_proved_by_counting():
    derivation = d.conv_derivation()
    assert [c.passed for c in derivation.checks] == [True]
    assert r"\left\lfloor" in derivation.steps[-1].latex and "C_{out}" in derivation.steps[-1].latex
    exhaustive = d.conv_exhaustive_check()
    assert exhaustive.passed and exhaustive.cases > 500


@pytest.mark.parametrize(
    "wrong",
    [
        sp.floor((d.W + d.PAD - d.KER) / d.STRIDE) + 1,  # dropped the factor 2 on the padding
        sp.ceiling((d.W + 2 * d.PAD - d.KER) / d.STRIDE) + 1,  # rounds the wrong way
        sp.floor((d.W + 2 * d.PAD - d.KER) / d.STRIDE),  # dropped the + 1
    ],
)
def test_conv_wrong_formula_rejected(wrong):
    (check,) = d.conv_derivation(wrong).checks
    assert not check.passed
    assert not d.conv_exhaustive_check(wrong).passed
    with pytest.raises(d.DerivationError):
        d.require(d.conv_derivation(wrong).checks)


def test_conv_shape_matches_keras_on_grid():
    check = d.conv_tf_check()
    assert check.passed and check.cases == 81 and check.max_abs_diff == 0
    small = {"sizes": ((7, 10),), "kernels": ((3, 2),), "strides": ((2, 3),), "paddings": ((1, 0),)}
    wrong = d.conv_tf_check(sp.floor((d.W + d.PAD - d.KER) / d.STRIDE) + 1, small)
    assert wrong.cases == 1 and wrong.max_abs_diff > 0 and not wrong.passed


# --- 6-2 batch normalisation --------------------------------------------------------------


def test_batchnorm_all_gradients_proved_for_m4(bn4):
    assert [c.passed for c in bn4.checks] == [True] * len(d.BN_GRADIENTS)
    assert all("m = 4" in c.name for c in bn4.checks)


def test_batchnorm_all_gradients_proved_for_general_m(bn_general):
    assert [c.passed for c in bn_general.checks] == [True] * len(d.BN_GRADIENTS)


def _wrong_bn_forms() -> dict[str, dict[str, sp.Expr]]:
    forms = d.batchnorm_closed_forms()
    return {
        "x": {"x": forms["x"] - d.D_MU() / d.M},  # dropped the path through mu
        "var": {"var": -forms["var"]},  # wrong sign
        "mu": {"mu": sp.Sum(d.D_XHAT(d.J) * (-1 / sp.sqrt(d.VAR + d.EPS)), (d.J, 1, d.M))},  # dropped the sigma^2 path
        "gamma": {"gamma": sp.Sum(d.G[d.J] * d.X[d.J], (d.J, 1, d.M))},  # x instead of x-hat
    }


@pytest.mark.parametrize("m", [4, None])
@pytest.mark.parametrize("name", ["x", "var", "mu", "gamma"])
def test_batchnorm_wrong_closed_form_rejected(name, m):
    forms = _wrong_bn_forms()[name]
    check = d.batchnorm_check(name, m, forms)
    assert not check.passed and "rejected" in check.detail
    assert d.batchnorm_check(name, m).passed
    with pytest.raises(d.DerivationError, match=check.name.replace("^", r"\^")):
        d.require([check])


def test_batchnorm_local_partials_and_the_vanishing_sum():
    local = d.batchnorm_local_derivation()
    assert [c.passed for c in local.checks] == [True] * 8
    assert "sum of deviations" in local.checks[-2].name and "without the vanishing sum" in local.checks[-1].name
    assert r"\frac{\partial \mu_{B}}{\partial x_{i}} = \frac{1}{m}" in local.steps[1].latex


def test_results_are_written_as_a_person_writes_them(bn4):
    latex = "\n".join(s.latex for s in bn4.steps)
    assert r"y_{i} = \gamma {\hat{x}}_{i} + \beta" in latex and r"\sigma^{2}_{B} + \epsilon" in latex
    assert r"\epsilon + \sigma" not in latex
    softmax = "\n".join(s.latex for s in d.softmax_derivation(None).steps)
    assert r"\Delta = {\hat{y}}_{t} \left(1 - {y}_{t}\right)" in softmax
    assert r"- {y}_{t} \left(1 - {\hat{y}}_{t}\right)" in softmax


def test_a_written_form_is_shown_only_where_it_equals_the_proved_one():
    x = sp.Symbol("x")
    written = d._u(sp.Add, d._u(sp.Mul, 2, x), 1)
    assert d._as_written(written, 1 + 2 * x) is written
    assert d._as_written(written, 2 * x) == 2 * x  # a written form that differs falls back to the proved one


def test_softmax_chain_rule_steps_proved():
    chain = d.softmax_chain_derivation(7)
    assert [c.passed for c in chain.checks] == [True] * 5
    assert r"\begin{cases}" in chain.steps[1].latex
    wrong = d.compare("wrong Jacobian", "", sp.diff(d._softmax(1, 3).doit(), d.Z[1]),
                      d._softmax(1, 3).doit() ** 2)
    assert not wrong.passed


def test_batchnorm_wrong_upstream_propagates():
    # a wrong dl/dxhat also breaks every gradient built on it
    derivation = d.batchnorm_derivation(4, {"xhat": 2 * d.G[d.I] * d.GAMMA})
    failed = {c.name.split(",")[0] for c in derivation.checks if not c.passed}
    assert failed == {"dl/dxhat_i", "dl/dsigma^2", "dl/dmu", "dl/dx_i"}


def test_batchnorm_matches_gradient_tape_and_sgd_step():
    grads, update = d.batchnorm_tf_check()
    assert grads.passed and grads.cases == 80 and grads.max_abs_diff <= d.TF_TOL
    assert update.passed and update.cases == 20
    wrong, _ = d.batchnorm_tf_check(forms=_wrong_bn_forms()["x"])
    assert not wrong.passed and wrong.max_abs_diff > 1e-3


# --- 6-3 softmax and cross-entropy --------------------------------------------------------


@pytest.mark.parametrize("classes", [7, None])
def test_softmax_gradients_proved(classes):
    derivation = d.softmax_derivation(classes)
    assert [c.passed for c in derivation.checks] == [True, True, True]
    assert r"{\hat{y}}_{t} - {y}_{t}" in derivation.checks[0].latex


@pytest.mark.parametrize("classes", [7, None])
def test_softmax_wrong_sign_rejected(classes):
    full, agree = d.softmax_derivation(classes, full=d.YHAT[d.T] + d.Y[d.T]).checks[::2]
    assert not full.passed and not agree.passed
    term = d.softmax_derivation(classes, term=d.Y[d.T] * (1 - d.YHAT[d.T])).checks[1]
    assert not term.passed


def test_single_term_agrees_only_for_one_hot_true_class():
    agree = d.softmax_derivation(None).checks[2]
    assert agree.passed and "[1]" in agree.detail
    # y_t = 1 (one-hot at t): both gradients equal yhat_t - 1; a soft label y_t = 1/2 splits them.
    yhat, y = d.YHAT[d.T], d.Y[d.T]
    for y_t, equal in [(1, True), (sp.Rational(1, 2), False)]:
        gap = (d.SOFTMAX_FULL - d.SOFTMAX_TERM).subs({y: y_t, yhat: sp.Rational(3, 10)})
        assert (gap == 0) is equal


def test_softmax_matches_tensorflow():
    full, term = d.softmax_tf_check()
    assert full.passed and term.passed and full.cases == 2 * 16 * 7
    wrong, _ = d.softmax_tf_check(full=d.YHAT[d.T] + d.Y[d.T])
    assert not wrong.passed


# --- strict entry point -------------------------------------------------------------------


def _fake(monkeypatch, broken: str | None = None):
    """Replace every heavy step of verify_all by a cheap one; `broken` returns a failing verdict."""
    ok = d.Check("ok", "", True, "")
    bad = d.Check("bad", "", False, "planted failure")
    der = lambda name: d.Derivation(name, (), (bad if broken == name else ok,))  # noqa: E731
    num = lambda name: d.NumericCheck(name, 1, 1.0 if broken == name else 0.0, 0.0)  # noqa: E731
    monkeypatch.setattr(d, "conv_derivation", lambda: der("conv"))
    monkeypatch.setattr(d, "conv_exhaustive_check", lambda: num("counting"))
    monkeypatch.setattr(d, "conv_tf_check", lambda: num("conv_tf"))
    monkeypatch.setattr(d, "batchnorm_derivation", lambda m: der(f"bn{m}"))
    monkeypatch.setattr(d, "batchnorm_local_derivation", lambda: der("bn_local"))
    monkeypatch.setattr(d, "softmax_chain_derivation", lambda k: der(f"chain{k}"))
    monkeypatch.setattr(d, "batchnorm_tf_check", lambda m: (num("bn_tf"),))
    monkeypatch.setattr(d, "softmax_derivation", lambda k: der(f"softmax{k}"))
    monkeypatch.setattr(d, "softmax_tf_check", lambda k: (num("softmax_tf"),))


def test_verify_all_returns_when_everything_passes(monkeypatch):
    _fake(monkeypatch)
    result = d.verify_all(m=3, classes=5)
    assert len(result.symbolic) == 7 and len(result.numeric) == 4 and result.max_abs_diff == 0
    assert (result.m, result.classes) == (3, 5)


@pytest.mark.parametrize("broken", ["conv", "bnNone", "bn_local", "softmax7", "chain7", "counting", "bn_tf",
                                    "softmax_tf"])
def test_verify_all_raises_on_any_failure(monkeypatch, broken):
    _fake(monkeypatch, broken)
    with pytest.raises(d.DerivationError, match="1 of 11 checks failed"):
        d.verify_all()


def test_import_does_not_load_tensorflow():
    import subprocess
    import sys

    code = "import sys, fer_utils.derivations; print('tensorflow' in sys.modules, 'keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
