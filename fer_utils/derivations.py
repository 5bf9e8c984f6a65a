"""Chapter 6 derivations: built from the forward definitions, proved with SymPy, confirmed with TensorFlow.

Three problems:

* 6-1 the output shape of a padded, strided 2-D convolution (counting kernel positions);
* 6-2 the backward pass of batch normalisation;
* 6-3 the gradient of softmax followed by cross-entropy.

Every closed form is compared with SymPy's own derivative of the forward definition: the check
passes only when the difference reduces to exactly 0. The functions here never raise on a wrong
closed form; they return :class:`Check` verdicts. :func:`require` (and :func:`verify_all`, the
strict entry point the book uses) raises :class:`DerivationError` when any verdict failed.
TensorFlow is imported lazily, inside the numeric cross-checks only.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence, Union

import sympy as sp
from sympy.printing.latex import LatexPrinter

# ---------------------------------------------------------------------------------------------
# Verdicts
# ---------------------------------------------------------------------------------------------


class DerivationError(AssertionError):
    """A closed form or a numeric cross-check disagreed with its reference."""


@dataclass(frozen=True)
class Check:
    """Verdict of one symbolic identity: closed form == SymPy's derivative."""

    name: str
    latex: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class NumericCheck:
    """Verdict of a numeric cross-check: the largest absolute difference over all cases."""

    name: str
    cases: int
    max_abs_diff: float
    tol: float

    @property
    def passed(self) -> bool:
        """True when every case agreed within tolerance (NaN never passes)."""
        return self.cases > 0 and self.max_abs_diff <= self.tol

    @property
    def detail(self) -> str:
        """One-line summary of the comparison."""
        return f"{self.cases} cases, largest difference {self.max_abs_diff:.3g} (tolerance {self.tol:g})"


@dataclass(frozen=True)
class Step:
    """One typeset step of a derivation: a sentence and a LaTeX display."""

    text: str
    latex: str


@dataclass(frozen=True)
class Derivation:
    """A derivation's typeset steps and the symbolic checks that prove its closed forms."""

    problem: str
    steps: tuple[Step, ...]
    checks: tuple[Check, ...]


Verdict = Union[Check, NumericCheck]


def require(checks: Iterable[Verdict]) -> list[Verdict]:
    """Return the checks, or raise DerivationError naming every one that failed."""
    checks = list(checks)
    failed = [c for c in checks if not c.passed]
    if failed:
        lines = "\n".join(f"  - {c.name}: {c.detail}" for c in failed)
        raise DerivationError(f"{len(failed)} of {len(checks)} checks failed:\n{lines}")
    return checks


# ---------------------------------------------------------------------------------------------
# Proving two expressions equal
# ---------------------------------------------------------------------------------------------

_SPOT_TOL = 1e-9
#: Tolerance of the float64 TensorFlow cross-checks (absolute, on values of order 1).
TF_TOL = 1e-9


def _is_zero(expr: sp.Expr) -> bool:
    """True only if SymPy reduces expr to exactly 0 (cheap rewrites first, simplify last)."""
    if sp.expand(expr) == 0:
        return True
    if sp.expand(sp.numer(sp.together(expr))) == 0:  # over one common denominator
        return True
    return sp.simplify(expr) == 0


def _spot_value(expr: sp.Expr, seed: int) -> float | None:
    """|expr| at a random point (reals in [1/2, 2], integers such as m in 2..6); None if not finite."""
    rng = random.Random(seed)
    indexed = {a: sp.Rational(rng.randint(50, 200), 100) for a in expr.atoms(sp.Indexed)}
    expr = expr.xreplace(indexed)
    point = {
        s: (sp.Integer(rng.randint(2, 6)) if s.is_integer else sp.Rational(rng.randint(50, 200), 100))
        for s in expr.free_symbols
    }
    value = sp.N(expr.xreplace(point), 30)
    return float(abs(value)) if value.is_finite else None


def compare(
    name: str, latex: str, closed: sp.Expr | Sequence[sp.Expr], reference: sp.Expr | Sequence[sp.Expr]
) -> Check:
    """Check closed == reference (elementwise): each difference must vanish at random points and reduce to 0."""
    pairs = zip(closed, reference) if isinstance(closed, (list, tuple)) else [(closed, reference)]
    diffs = [c - r for c, r in pairs]
    spots = [v for d in diffs for seed in range(3) if (v := _spot_value(d, seed)) is not None]
    worst = max(spots, default=0.0)
    if worst > _SPOT_TOL:
        return Check(name, latex, False, f"rejected: the difference is {worst:.3g} at a random point")
    if all(_is_zero(d) for d in diffs):
        return Check(name, latex, True, "difference simplifies to 0")
    return Check(name, latex, False, "SymPy could not reduce the difference to 0")


def _partial(num: str, wrt: str) -> type[sp.Function]:
    """A placeholder function that typesets as d(num)/d(wrt_args)."""

    def _latex(self: sp.Function, printer: LatexPrinter) -> str:
        sub = ",".join(printer._print(a) for a in self.args)
        sub = f"_{{{sub}}}" if self.args else ""
        return rf"\frac{{\partial {num}}}{{\partial {wrt}{sub}}}"

    name = "d_" + "".join(ch for ch in num + "_" + wrt if ch.isalnum() or ch == "_")
    return type(name, (sp.Function,), {"_latex": _latex})


class _Printer(LatexPrinter):
    """SymPy's LaTeX printer, with the positive terms of a sum first (x_i - mu, not -mu + x_i)."""

    def _as_ordered_terms(self, expr: sp.Expr, order: str | None = None) -> list[sp.Expr]:
        terms = super()._as_ordered_terms(expr, order=order)
        return sorted(terms, key=lambda term: term.could_extract_minus_sign())


def _tex(expr: sp.Basic) -> str:
    """LaTeX of expr in reading order."""
    return _Printer().doprint(expr)


def _latex_eq(lhs: sp.Expr, rhs: sp.Expr) -> str:
    """LaTeX of lhs = rhs, without SymPy evaluating the equation."""
    return _tex(sp.Eq(lhs, rhs, evaluate=False))


# Results as a person writes them. SymPy stores a sum or product in its own order (beta + gamma xhat, -(y - 1) yhat);
# a written form is the same expression built unevaluated, in reading order, and printed in that order. It is shown
# only where it equals the proven form exactly; elsewhere the proven form is printed as SymPy has it.


def _u(func: type[sp.Basic], *args: sp.Basic) -> sp.Expr:
    """func(*args) left unevaluated, so that it prints in the order given."""
    return func(*args, evaluate=False)


def _written_tex(expr: sp.Basic) -> str:
    """LaTeX of an expression in the order it was built."""
    return _Printer({"order": "none"}).doprint(expr)


def _as_written(written: sp.Expr, proven: sp.Expr) -> sp.Expr:
    """`written` where it equals `proven` exactly (finite sums evaluated), else `proven` itself."""
    return written if _is_zero(_reduce_sums(written) - _reduce_sums(proven)) else proven


def _written_eq(lhs: sp.Expr, written: sp.Expr, proven: sp.Expr) -> str:
    """LaTeX of lhs = the written form of `proven` (see _as_written)."""
    return _written_tex(sp.Eq(lhs, _as_written(written, proven), evaluate=False))


# Finite sums over 1..m with a symbolic m. SymPy differentiates Sum(f(x_j)) into sums of Kronecker
# deltas but cannot itself evaluate the nested result (Sum.doit fails on IndexedBase summands, and
# reusing a dummy name in nested sums gives wrong signs in SymPy 1.14). _reduce_sums applies the
# three rules of finite sums and nothing more: linearity, sum_j delta_jk f(j) = f(k) for 1 <= k <= m,
# and sum_j c = m c; whatever is left is a canonical opaque sum such as sum_j g_j x_j.

_CANON = sp.Dummy("j", integer=True)


def _sum_of(summand: sp.Expr, j: sp.Symbol, lo: sp.Expr, hi: sp.Expr) -> sp.Expr:
    """Evaluate Sum(summand, (j, lo, hi)) by linearity, Kronecker deltas and constants."""
    total = sp.Integer(0)
    for term in sp.Add.make_args(sp.expand(summand)):
        const, dep = term.as_independent(j, as_Add=False)
        if dep.has(sp.Sum):
            raise DerivationError(f"nested sum depending on the outer index {j}: {dep}")
        deltas = [f for f in sp.Mul.make_args(dep) if isinstance(f, sp.KroneckerDelta)]
        if deltas:
            a, b = deltas[0].args
            total += const * (dep / deltas[0]).xreplace({j: b if a == j else a})
        elif dep == 1:
            total += const * (hi - lo + 1)
        else:
            total += const * sp.Sum(dep.xreplace({j: _CANON}), (_CANON, lo, hi))
    return total


def _reduce_sums(expr: sp.Expr) -> sp.Expr:
    """Evaluate every finite sum in expr, innermost first (see _sum_of)."""
    if not expr.args:
        return expr
    expr = expr.func(*(_reduce_sums(a) for a in expr.args))
    if isinstance(expr, sp.Sum):
        ((j, lo, hi),) = expr.limits
        return _sum_of(expr.function, j, lo, hi)
    return expr


def _compare_general(
    name: str, latex: str, closed: sp.Expr, reference: sp.Expr, facts: Mapping[sp.Expr, sp.Expr] | None = None
) -> Check:
    """compare() for a symbolic size: reduce sums, apply facts, treat leftover sums as symbols."""
    closed, reference = _reduce_sums(closed), _reduce_sums(reference)
    opaque = {}
    for s in sorted((closed - reference).atoms(sp.Sum), key=sp.default_sort_key):
        opaque[s] = (facts or {}).get(s, sp.Dummy(f"S{len(opaque)}", real=True))
    return compare(name, latex, closed.xreplace(opaque), reference.xreplace(opaque))


# ---------------------------------------------------------------------------------------------
# 6-1 Convolution output shape
# ---------------------------------------------------------------------------------------------

W, KER, STRIDE = sp.symbols("W k s", integer=True, positive=True)
PAD = sp.Symbol("p", integer=True, nonnegative=True)
_STEP = sp.Symbol("t", integer=True, nonnegative=True)

#: Expected output length along one axis: floor((W + 2p - k) / s) + 1.
CONV_FORMULA = sp.floor((W + 2 * PAD - KER) / STRIDE) + 1

#: TensorFlow grid: input sizes (W, H), kernels (k1, k2), strides (s1, s2), paddings (p1, p2).
CONV_GRID: dict[str, tuple[tuple[int, int], ...]] = {
    "sizes": ((5, 5), (12, 9), (17, 24)),
    "kernels": ((1, 1), (3, 3), (5, 2)),
    "strides": ((1, 1), (2, 2), (3, 1)),
    "paddings": ((0, 0), (1, 2), (2, 1)),
}


def conv_derivation(formula: sp.Expr = CONV_FORMULA) -> Derivation:
    """Count the positions a kernel can take along one axis and compare with formula."""
    padded = W + 2 * PAD
    fits = sp.Le(STRIDE * _STEP + KER - 1, padded - 1)
    solved = sp.solve(fits, _STEP)
    if not (isinstance(solved, sp.LessThan) and solved.lhs == _STEP):
        raise DerivationError(f"unexpected form of SymPy's solution of {fits}: {solved}")
    t_max = solved.rhs
    count = sp.Sum(1, (_STEP, 0, sp.floor(t_max)))
    out = sp.Symbol("W_{out}")
    steps = (
        Step(
            "Zero padding adds $p$ pixels on each side of the axis, so the kernel slides over",
            _latex_eq(sp.Symbol("W'"), padded),
        ),
        Step(
            r"A kernel whose first pixel sits at offset $a = s\,t$ ($t = 0, 1, 2, \dots$) covers pixels "
            r"$a, \dots, a + k - 1$; it fits inside the padded axis when",
            _tex(fits),
        ),
        Step("SymPy solves this for the step number $t$:", _tex(solved)),
        Step(
            "Each admissible integer $t$ gives one output pixel. Assuming the kernel fits at least once "
            r"($k \le W + 2p$), SymPy sums one per admissible $t$:",
            _latex_eq(out, sp.Eq(count, count.doit(), evaluate=False)),
        ),
        Step(
            "The two spatial axes are independent ($k_1, s_1, p_1$ along $W$; $k_2, s_2, p_2$ along $H$), "
            "the batch passes through, and each of the $C_{out}$ filters yields one channel:",
            conv_shape_latex(formula),
        ),
    )
    check = compare("output length = number of kernel positions", _latex_eq(out, formula), formula, count.doit())
    return Derivation("6-1", steps, (check,))


def conv_shape_latex(formula: sp.Expr = CONV_FORMULA) -> str:
    """LaTeX of the full output shape (B, W_out, H_out, C_out) predicted by formula."""
    w1, w2, k1, k2, s1, s2 = sp.symbols("W H k_1 k_2 s_1 s_2", integer=True, positive=True)
    p1, p2 = sp.symbols("p_1 p_2", integer=True, nonnegative=True)
    along_w = formula.xreplace({W: w1, KER: k1, STRIDE: s1, PAD: p1})
    along_h = formula.xreplace({W: w2, KER: k2, STRIDE: s2, PAD: p2})
    shape = sp.Tuple(sp.Symbol("B"), along_w, along_h, sp.Symbol("C_{out}"))
    return r"\text{output shape} = " + _tex(shape)


def count_positions(size: int, kernel: int, stride: int, pad: int) -> int:
    """Count, one offset at a time, where a kernel starts inside the padded axis."""
    padded = size + 2 * pad
    return sum(1 for a in range(padded) if a % stride == 0 and a + kernel <= padded)


def _axis_length(formula: sp.Expr) -> Callable[[int, int, int, int], int]:
    """Turn formula(W, k, s, p) into an exact integer function."""
    return lambda w, k, s, p: int(formula.xreplace({W: w, KER: k, STRIDE: s, PAD: p}))


def conv_exhaustive_check(formula: sp.Expr = CONV_FORMULA, max_size: int = 16) -> NumericCheck:
    """Compare formula with literal position counting for every small (W, k, s, p)."""
    length = _axis_length(formula)
    cases, worst = 0, 0
    for w, k, s, p in itertools.product(range(1, max_size + 1), range(1, 6), range(1, 5), range(0, 3)):
        if k <= w + 2 * p:
            cases += 1
            worst = max(worst, abs(length(w, k, s, p) - count_positions(w, k, s, p)))
    return NumericCheck("formula vs counting kernel positions", cases, float(worst), 0.0)


def conv_tf_check(
    formula: sp.Expr = CONV_FORMULA,
    grid: Mapping[str, Sequence[tuple[int, int]]] = CONV_GRID,
    batch: int = 2,
    c_in: int = 3,
    c_out: int = 4,
) -> NumericCheck:
    """Compare the predicted (B, W_out, H_out, C_out) with ZeroPadding2D + 'valid' Conv2D in Keras."""
    import keras

    length = _axis_length(formula)
    cases, worst = 0, 0
    for (w, h), (k1, k2), (s1, s2), (p1, p2) in itertools.product(
        grid["sizes"], grid["kernels"], grid["strides"], grid["paddings"]
    ):
        if k1 > w + 2 * p1 or k2 > h + 2 * p2:
            continue
        x = keras.ops.zeros((batch, w, h, c_in))
        x = keras.layers.ZeroPadding2D(((p1, p1), (p2, p2)))(x)
        y = keras.layers.Conv2D(c_out, (k1, k2), strides=(s1, s2), padding="valid")(x)
        expected = (batch, length(w, k1, s1, p1), length(h, k2, s2, p2), c_out)
        worst = max(worst, max(abs(a - b) for a, b in zip(tuple(y.shape), expected)))
        cases += 1
    return NumericCheck("predicted shape vs Keras ZeroPadding2D + Conv2D", cases, float(worst), 0.0)


# ---------------------------------------------------------------------------------------------
# 6-2 Batch normalisation backward pass
# ---------------------------------------------------------------------------------------------

M = sp.Symbol("m", integer=True, positive=True)
I, J, _K = sp.symbols("i j k", integer=True)  # noqa: E741  # free index, summation index, proof index
_N, _Q, _R = sp.symbols("n q r", integer=True)  # dummies of the forward sums, never reused
X, G, XHAT = (sp.IndexedBase(n, real=True) for n in ("x", "g", "xhat"))
GAMMA, BETA = sp.symbols("gamma beta", real=True)
EPS = sp.Symbol("epsilon", positive=True)
MU = sp.Symbol("mu_B", real=True)
VAR = sp.Symbol("sigma_B^2", nonnegative=True)

D_XHAT, D_VAR, D_MU = _partial(r"\ell", r"\hat{x}"), _partial(r"\ell", r"\sigma^{2}_{B}"), _partial(r"\ell", r"\mu_{B}")
_D_X, _D_GAMMA, _D_BETA = _partial(r"\ell", "x"), _partial(r"\ell", r"\gamma"), _partial(r"\ell", r"\beta")

#: Which graph quantity each gradient is taken with respect to, and the forward-graph level
#: at which that partial derivative lives (what is held fixed).
BN_GRADIENTS = ("xhat", "var", "mu", "x", "gamma", "beta", "x_compact")
_BN_LEVEL = {"xhat": "xhat", "var": "var", "mu": "mu", "x": "x", "gamma": "x", "beta": "x", "x_compact": "x"}
_BN_LHS = {
    "xhat": D_XHAT(I), "var": D_VAR(), "mu": D_MU(), "x": _D_X(I),
    "gamma": _D_GAMMA(), "beta": _D_BETA(), "x_compact": _D_X(I),
}  # fmt: skip
_BN_NAME = {
    "xhat": "dl/dxhat_i", "var": "dl/dsigma^2", "mu": "dl/dmu", "x": "dl/dx_i",
    "gamma": "dl/dgamma", "beta": "dl/dbeta", "x_compact": "dl/dx_i (compact form)",
}  # fmt: skip


def batchnorm_forward(written: bool = False) -> tuple[sp.Eq, ...]:
    """The forward definitions of batch normalisation over a mini-batch of size m (`written`: in reading order)."""
    if written:
        return (
            sp.Eq(MU, _u(sp.Mul, _inv(M), sp.Sum(X[I], (I, 1, M))), evaluate=False),
            sp.Eq(VAR, _u(sp.Mul, _inv(M), sp.Sum(_u(sp.Pow, _u(sp.Add, X[I], -MU), 2), (I, 1, M))), evaluate=False),
            sp.Eq(XHAT[I], _u(sp.Mul, _u(sp.Add, X[I], -MU), _inv(_root())), evaluate=False),
            sp.Eq(sp.Symbol("y_i"), _u(sp.Add, _u(sp.Mul, GAMMA, XHAT[I]), BETA), evaluate=False),
        )
    return (
        sp.Eq(MU, sp.Sum(X[I], (I, 1, M)) / M),
        sp.Eq(VAR, sp.Sum((X[I] - MU) ** 2, (I, 1, M)) / M),
        sp.Eq(XHAT[I], (X[I] - MU) / sp.sqrt(VAR + EPS)),
        sp.Eq(sp.Symbol("y_i"), GAMMA * XHAT[I] + BETA),
    )


def batchnorm_closed_forms() -> dict[str, sp.Expr]:
    """Right-hand sides of the backward pass (Ioffe & Szegedy 2015); g_i = dl/dy_i."""
    s = sp.sqrt(VAR + EPS)
    return {
        "xhat": G[I] * GAMMA,
        "var": sp.Sum(D_XHAT(J) * (X[J] - MU), (J, 1, M)) * sp.Rational(-1, 2) * (VAR + EPS) ** sp.Rational(-3, 2),
        "mu": -sp.Sum(D_XHAT(J), (J, 1, M)) / s - 2 * D_VAR() * sp.Sum(X[J] - MU, (J, 1, M)) / M,
        "x": D_XHAT(I) / s + D_VAR() * 2 * (X[I] - MU) / M + D_MU() / M,
        "gamma": sp.Sum(G[J] * XHAT[J], (J, 1, M)),
        "beta": sp.Sum(G[J], (J, 1, M)),
        "x_compact": GAMMA / (M * s) * (M * G[I] - sp.Sum(G[J], (J, 1, M))
                                        - XHAT[I] * sp.Sum(G[J] * XHAT[J], (J, 1, M))),
    }  # fmt: skip


def _root() -> sp.Expr:
    """sqrt(sigma^2 + epsilon), written in that order."""
    return sp.sqrt(_u(sp.Add, VAR, EPS), evaluate=False)


def _inv(expr: sp.Expr) -> sp.Expr:
    """1 / expr, unevaluated: inside a written product it prints as the denominator."""
    return sp.Pow(expr, -1, evaluate=False)


def batchnorm_written_forms() -> dict[str, sp.Expr]:
    """The closed forms of batchnorm_closed_forms() as a person writes them (Ioffe & Szegedy's order)."""
    dev = lambda k: _u(sp.Add, X[k], -MU)  # noqa: E731
    three_halves = sp.Pow(_u(sp.Add, VAR, EPS), sp.Rational(-3, 2), evaluate=False)
    return {
        "xhat": _u(sp.Mul, G[I], GAMMA),
        "var": _u(sp.Mul, sp.Rational(-1, 2), sp.Sum(_u(sp.Mul, D_XHAT(J), dev(J)), (J, 1, M)), three_halves),
        "mu": _u(sp.Add, _u(sp.Mul, -1, sp.Sum(D_XHAT(J), (J, 1, M)), _inv(_root())),
                 _u(sp.Mul, -2, D_VAR(), sp.Sum(dev(J), (J, 1, M)), _inv(M))),
        "x": _u(sp.Add, _u(sp.Mul, D_XHAT(I), _inv(_root())), _u(sp.Mul, 2, D_VAR(), dev(I), _inv(M)),
                _u(sp.Mul, D_MU(), _inv(M))),
        "gamma": sp.Sum(_u(sp.Mul, G[J], XHAT[J]), (J, 1, M)),
        "beta": sp.Sum(G[J], (J, 1, M)),
        "x_compact": _u(sp.Mul, GAMMA, _inv(_u(sp.Mul, M, _root())),
                        _u(sp.Add, _u(sp.Mul, M, G[I]), -sp.Sum(G[J], (J, 1, M)),
                           -_u(sp.Mul, XHAT[I], sp.Sum(_u(sp.Mul, G[J], XHAT[J]), (J, 1, M))))),
    }  # fmt: skip


#: The local partial derivatives of the forward graph: (name, node, parent, written form). Each is proved against
#: SymPy's derivative of the node's definition with respect to that parent, the other parents held fixed.
_BN_LOCAL = (
    ("dxhat/dvar", r"\hat{x}_{i}", r"\sigma^{2}_{B}", lambda: _u(sp.Mul, sp.Rational(-1, 2), _u(sp.Add, X[I], -MU),
                                                                sp.Pow(_u(sp.Add, VAR, EPS), sp.Rational(-3, 2),
                                                                       evaluate=False))),
    ("dxhat/dmu", r"\hat{x}_{i}", r"\mu_{B}", lambda: _u(sp.Mul, -1, _inv(_root()))),
    ("dxhat/dx", r"\hat{x}_{i}", r"x_{i}", lambda: _inv(_root())),
    ("dvar/dmu", r"\sigma^{2}_{B}", r"\mu_{B}",
     lambda: _u(sp.Mul, -2, sp.Sum(_u(sp.Add, X[J], -MU), (J, 1, M)), _inv(M))),
    ("dvar/dx", r"\sigma^{2}_{B}", r"x_{i}", lambda: _u(sp.Mul, 2, _u(sp.Add, X[I], -MU), _inv(M))),
    ("dmu/dx", r"\mu_{B}", r"x_{i}", lambda: _inv(M)),
)


def _local_reference(name: str) -> sp.Expr:
    """SymPy's derivative of one forward node with respect to its parent, the others held fixed (symbolic m)."""
    xhat = (X[I] - MU) / sp.sqrt(VAR + EPS)
    var = sp.Sum((X[_Q] - MU) ** 2, (_Q, 1, M)) / M
    mean = sp.Sum(X[_N], (_N, 1, M)) / M
    node, wrt = {"dxhat/dvar": (xhat, VAR), "dxhat/dmu": (xhat, MU), "dxhat/dx": (xhat, X[I]),
                 "dvar/dmu": (var, MU), "dvar/dx": (var, X[I]), "dmu/dx": (mean, X[I])}[name]  # fmt: skip
    return _reduce_sums(sp.diff(node.xreplace({I: _K}), wrt.xreplace({I: _K}))).xreplace({_K: I})


def batchnorm_local_derivation() -> Derivation:
    """The local partial derivatives of batch normalisation's forward graph (symbolic m), each proved against
    SymPy's derivative; and dl/dmu simplified, since the deviations from the batch mean sum to zero."""
    steps, checks = [], []
    for name, num, den, written in _BN_LOCAL:
        reference = _local_reference(name)
        lhs = _partial(num, den)()
        latex = _written_eq(lhs, written(), reference)
        steps.append(latex)
        checks.append(_compare_general(f"{name}, general m", latex, written(), reference))
    deviations = sp.Sum(X[J] - MU, (J, 1, M))
    vanishing = _reduce_sums(deviations.xreplace({MU: sp.Sum(X[_N], (_N, 1, M)) / M}))
    sum_latex = _written_tex(sp.Eq(sp.Sum(_u(sp.Add, X[J], -MU), (J, 1, M)), 0, evaluate=False))
    checks.append(compare("sum of deviations from the batch mean is 0", sum_latex, vanishing, sp.Integer(0)))
    forms = batchnorm_closed_forms()
    simplified = _u(sp.Mul, -1, sp.Sum(D_XHAT(J), (J, 1, M)), _inv(_root()))
    without = forms["mu"].xreplace({deviations: 0})
    mu_latex = _written_eq(D_MU(), simplified, without)
    checks.append(compare("dl/dmu without the vanishing sum", mu_latex, simplified, without))
    return Derivation("6-2 local", (
        Step("Each node of the forward graph depends on a few others; SymPy differentiates each definition with "
             r"respect to its parents, the others held fixed. How $\hat{x}_i$ changes with its three parents:",
             r"\qquad ".join(steps[:3])),
        Step(r"How $\sigma_B^2$ changes with $\mu_B$ and with $x_i$, and $\mu_B$ with $x_i$:",
             r"\qquad ".join(steps[3:])),
        Step(r"At the batch mean the deviations sum to zero,", sum_latex),
        Step(r"so the path from $\mu_B$ through $\sigma_B^2$ contributes nothing, and", mu_latex),
    ), tuple(checks))


def _resolve(expr: sp.Expr, forms: Mapping[str, sp.Expr]) -> sp.Expr:
    """Replace the placeholders dl/dxhat_j, dl/dsigma^2, dl/dmu by their closed forms."""
    for _ in range(4):
        expr = expr.replace(D_XHAT, lambda q: forms["xhat"].xreplace({I: q}))
        expr = expr.replace(D_VAR, lambda: forms["var"]).replace(D_MU, lambda: forms["mu"])
    return expr


def _at_level(expr: sp.Expr, level: str) -> sp.Expr:
    """Express xhat, sigma^2 and mu through the forward graph down to the given level."""
    if level == "xhat":
        return expr
    s = sp.sqrt(VAR + EPS)
    expr = expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base == XHAT, lambda e: (X[e.indices[0]] - MU) / s)
    if level == "var":
        return expr
    expr = expr.xreplace({VAR: sp.Sum((X[_Q] - MU) ** 2, (_Q, 1, M)) / M})
    if level == "mu":
        return expr
    return expr.xreplace({MU: sp.Sum(X[_N], (_N, 1, M)) / M})


def _bn_wrt(name: str, k: sp.Expr) -> sp.Expr:
    """The variable a gradient is taken with respect to (component k where indexed)."""
    return {"xhat": XHAT[k], "var": VAR, "mu": MU, "x": X[k], "x_compact": X[k], "gamma": GAMMA, "beta": BETA}[name]


def _upstream(expr: sp.Expr, loss: sp.Function) -> sp.Expr:
    """Replace SymPy's dl/dy_q (a Subs of a Derivative of the unknown loss) by the symbol g_q."""

    def is_partial(e: sp.Basic) -> bool:
        return isinstance(e, sp.Subs) and isinstance(e.expr, sp.Derivative) and e.expr.expr.func == loss

    def position(e: sp.Subs) -> sp.Expr:
        (var,) = e.expr.variables
        return G[list(e.expr.expr.args).index(var) + 1]

    out = expr.replace(is_partial, position)
    if out.has(loss):
        raise DerivationError(f"unexpected derivative of the loss left in {out}")
    return out


def batchnorm_check(name: str, m: int | None = 4, forms: Mapping[str, sp.Expr] | None = None) -> Check:
    """Prove one backward-pass formula (a key of BN_GRADIENTS) for batch size m (None: symbolic m)."""
    forms = {**batchnorm_closed_forms(), **(forms or {})}
    level = _BN_LEVEL[name]
    closed = _at_level(_resolve(forms[name], forms), level)
    y = _at_level(GAMMA * XHAT[_R] + BETA, level)
    latex = _latex_eq(_BN_LHS[name], forms[name])
    if m is None:
        reference = sp.diff(sp.Sum(G[_R] * y, (_R, 1, M)), _bn_wrt(name, _K))
        return _compare_general(f"{_BN_NAME[name]}, general m", latex, closed.xreplace({I: _K}), reference)
    loss = sp.Function("l")
    ys = [y.xreplace({_R: q}).subs(M, m).doit() for q in range(1, m + 1)]
    indices = range(1, m + 1) if name in ("xhat", "x", "x_compact") else [1]
    diffs = []
    for k in indices:
        reference = _upstream(sp.diff(loss(*ys), _bn_wrt(name, k)), loss)
        diffs.append(closed.xreplace({I: k}).subs(M, m).doit() - reference)
    return compare(f"{_BN_NAME[name]}, m = {m}", latex, diffs, [0] * len(diffs))


def batchnorm_derivation(m: int | None = 4, forms: Mapping[str, sp.Expr] | None = None) -> Derivation:
    """Prove every batch-norm gradient for batch size m (None: symbolic m); forms overrides closed forms."""
    forms = {**batchnorm_closed_forms(), **(forms or {})}
    steps = tuple(Step(text, _written_tex(eq)) for text, eq in zip(_BN_FORWARD_TEXT, batchnorm_forward(written=True)))
    written = batchnorm_written_forms()
    steps += tuple(Step(_BN_STEP_TEXT[n], _written_eq(_BN_LHS[n], written[n], forms[n])) for n in BN_GRADIENTS)
    checks = tuple(batchnorm_check(n, m, forms) for n in BN_GRADIENTS)
    return Derivation("6-2", steps, checks)


_BN_FORWARD_TEXT = (
    "Mini-batch mean:",
    "Mini-batch variance (divided by $m$, as in training):",
    "Normalised input:",
    r"Scale and shift, then the loss $\ell(y_1, \dots, y_m)$; write $g_i = \partial \ell / \partial y_i$:",
)
_BN_STEP_TEXT = {
    "xhat": r"The loss sees $\hat{x}_i$ only through $y_i = \gamma \hat{x}_i + \beta$:",
    "var": r"$\sigma_B^2$ enters every $\hat{x}_j$ (with $\mu_B$ held fixed):",
    "mu": r"$\mu_B$ enters every $\hat{x}_j$ directly, and $\sigma_B^2$ through $(x_j - \mu_B)^2$:",
    "x": r"$x_i$ enters $\hat{x}_i$, $\sigma_B^2$ and $\mu_B$, so three paths add up:",
    "gamma": r"$\gamma$ multiplies every $\hat{x}_i$:",
    "beta": r"$\beta$ is added to every $y_i$:",
    "x_compact": r"Substituting the three paths, and using $\sum_j (x_j - \mu_B) = 0$, gives the compact form:",
}


def _lambdify_bn(forms: Mapping[str, sp.Expr], m: int) -> dict[str, Callable]:
    """Numeric versions of the closed forms at the actual batch statistics, in x_q, g_q, γ, β, ε."""
    xs, gs = sp.symbols(f"x1:{m + 1}", real=True), sp.symbols(f"g1:{m + 1}", real=True)
    plain = {**{X[q + 1]: xs[q] for q in range(m)}, **{G[q + 1]: gs[q] for q in range(m)}}
    args = (*xs, *gs, GAMMA, BETA, EPS)
    out = {}
    for name in BN_GRADIENTS:
        closed = _at_level(_resolve(forms[name], forms), "x").subs(M, m)
        rows = [closed.xreplace({I: k}).doit().xreplace(plain) for k in range(1, m + 1)]
        out[name] = sp.lambdify(args, rows if closed.has(I) else rows[0], "numpy")
    return out


def batchnorm_tf_check(
    m: int = 4,
    channels: int = 5,
    eps: float = 1e-3,
    lr: float = 0.1,
    momentum: float = 0.9,
    seed: int = 0,
    forms: Mapping[str, sp.Expr] | None = None,
) -> tuple[NumericCheck, NumericCheck]:
    """Closed forms vs tf.GradientTape on BatchNormalization(training=True), then one SGD step."""
    import keras
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    x = tf.constant(rng.normal(1.0, 2.0, size=(m, channels)))
    w = tf.constant(rng.normal(size=(m, channels)))
    layer = keras.layers.BatchNormalization(epsilon=eps, momentum=momentum, dtype="float64")
    layer.build((None, channels))
    gamma0, beta0 = rng.normal(1.0, 0.5, size=channels), rng.normal(size=channels)
    layer.gamma.assign(gamma0)
    layer.beta.assign(beta0)
    moving0 = layer.moving_mean.numpy(), layer.moving_variance.numpy()
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        y = layer(x, training=True)
        mu = tf.reduce_mean(x, axis=0)
        var = tf.reduce_mean((x - mu) ** 2, axis=0)
        xhat = (x - mu) / tf.sqrt(var + eps)
        loss = tf.reduce_sum(w * tf.tanh(y))
        loss_manual = tf.reduce_sum(w * tf.tanh(gamma0 * xhat + beta0))
    taped = dict(zip(("y", "x", "gamma", "beta"), tape.gradient(loss, [y, x, layer.gamma, layer.beta])))
    taped.update(zip(("xhat", "var", "mu"), tape.gradient(loss_manual, [xhat, var, mu])))
    taped["x_compact"] = taped["x"]
    numeric = _lambdify_bn({**batchnorm_closed_forms(), **(forms or {})}, m)
    args = (*x.numpy(), *taped["y"].numpy(), gamma0, beta0, eps)
    closed = {n: np.array(numeric[n](*args)) for n in BN_GRADIENTS}
    grad_diff = max(float(np.max(np.abs(closed[n] - taped[n].numpy()))) for n in BN_GRADIENTS)
    grad_cases = sum(closed[n].size for n in BN_GRADIENTS)

    sgd = keras.optimizers.SGD(learning_rate=lr)
    sgd.apply_gradients([(taped["gamma"], layer.gamma), (taped["beta"], layer.beta)])
    lr = float(sgd.learning_rate.numpy())  # Keras stores it in float32
    x_np = x.numpy()
    updates = [
        (layer.gamma.numpy(), gamma0 - lr * closed["gamma"]),
        (layer.beta.numpy(), beta0 - lr * closed["beta"]),
        (layer.moving_mean.numpy(), momentum * moving0[0] + (1 - momentum) * x_np.mean(axis=0)),
        (layer.moving_variance.numpy(), momentum * moving0[1] + (1 - momentum) * x_np.var(axis=0)),
    ]
    update_diff = max(float(np.max(np.abs(a - b))) for a, b in updates)
    update_cases = sum(a.size for a, _ in updates)
    return (
        NumericCheck("batch-norm gradients vs tf.GradientTape", grad_cases, grad_diff, TF_TOL),
        NumericCheck("gamma/beta SGD step and moving statistics vs Keras", update_cases, update_diff, TF_TOL),
    )


# ---------------------------------------------------------------------------------------------
# 6-3 Softmax and cross-entropy
# ---------------------------------------------------------------------------------------------

CLASSES = sp.Symbol("K", integer=True, positive=True)
T = sp.Symbol("t", integer=True)  # the class whose logit is differentiated
Z, Y, YHAT = (sp.IndexedBase(n, real=True) for n in ("z", "y", "yhat"))
_D_LOSS_Z = _partial("L", "z")
_D_TERM_Z = _partial("L_t", "z_t")

#: Closed forms, in terms of yhat_t and y_t: the full loss, and its single term L_t alone.
SOFTMAX_FULL = YHAT[T] - Y[T]
SOFTMAX_TERM = -Y[T] * (1 - YHAT[T])


def _softmax(i: sp.Expr, classes: sp.Expr) -> sp.Expr:
    """yhat_i = exp(z_i) / sum_j exp(z_j)."""
    return sp.exp(Z[i]) / sp.Sum(sp.exp(Z[J]), (J, 1, classes))


def _with_softmax(expr: sp.Expr, classes: sp.Expr) -> sp.Expr:
    """Replace each yhat_q by the softmax of z."""
    is_yhat = lambda e: isinstance(e, sp.Indexed) and e.base == YHAT  # noqa: E731
    return expr.replace(is_yhat, lambda e: _softmax(e.indices[0], classes))


def _softmax_pair(
    name: str, latex: str, closed: sp.Expr, loss: sp.Expr, classes: int | None, components: Sequence[int]
) -> Check:
    """Prove d loss / d z_k == closed for the given k, with sum_i y_i = 1."""
    if classes is None:
        reference = sp.diff(loss, Z[T])
        labels_sum = sp.Sum(Y[_CANON], (_CANON, 1, CLASSES))
        return _compare_general(f"{name}, general K", latex, _with_softmax(closed, CLASSES), reference, {labels_sum: 1})
    last = {Y[classes]: 1 - sum(Y[q] for q in range(1, classes))}
    diffs = []
    for k in components:
        loss_k = loss.xreplace({T: k}).subs(CLASSES, classes).doit()
        closed_k = _with_softmax(closed.xreplace({T: k}), classes).subs(CLASSES, classes).doit()
        diffs.append((closed_k - sp.diff(loss_k, Z[k])).xreplace(last))
    return compare(f"{name}, K = {classes}", latex, diffs, [0] * len(diffs))


def softmax_derivation(
    classes: int | None = 7, full: sp.Expr = SOFTMAX_FULL, term: sp.Expr = SOFTMAX_TERM
) -> Derivation:
    """Prove dL/dz_t = yhat_t - y_t and dL_t/dz_t = -y_t (1 - yhat_t); find when they agree."""
    yhat_t, y_t = YHAT[T], Y[T]
    loss = -sp.Sum(Y[I] * sp.log(_softmax(I, CLASSES)), (I, 1, CLASSES))
    loss_t = -y_t * sp.log(_softmax(T, CLASSES))
    n = range(1, (classes or 1) + 1)
    checks = [
        _softmax_pair("dL/dz_t = yhat_t - y_t", _latex_eq(_D_LOSS_Z(T), full), full, loss, classes, n),
        _softmax_pair("dL_t/dz_t = -y_t (1 - yhat_t)", _latex_eq(_D_TERM_Z(), term), term, loss_t, classes, n),
    ]
    gap = sp.factor(full - term)
    written_gap = _u(sp.Mul, yhat_t, _u(sp.Add, 1, -y_t))
    written_term = _u(sp.Mul, -1, y_t, _u(sp.Add, 1, -yhat_t))
    agree = sp.solve(gap, y_t)
    positive = _softmax(1, classes or 2).subs(CLASSES, classes or 2).doit().is_positive
    checks.append(
        Check(
            "the two agree exactly when y_t = 1",
            _latex_eq(sp.Symbol(r"\Delta"), gap),
            agree == [1] and positive is True,
            f"SymPy solves Δ = 0 for y_t: {agree}; softmax output positive: {positive}",
        )
    )
    written_loss = _u(sp.Mul, -1, sp.Sum(_u(sp.Mul, Y[I], sp.log(_softmax(I, CLASSES))), (I, 1, CLASSES)))
    steps = (
        Step("Softmax turns logits into probabilities:", _latex_eq(YHAT[I], _softmax(I, CLASSES))),
        Step(r"Cross-entropy against a label distribution with $\sum_i y_i = 1$:",
             _written_eq(sp.Symbol("L"), written_loss, loss)),
        Step(
            r"$z_t$ reaches $L$ through every $\hat{y}_i$ (via their common denominator). "
            "SymPy's derivative, with its sums evaluated, is",
            _latex_eq(_D_LOSS_Z(T), _reduce_sums(sp.diff(loss, Z[T]))),
        ),
        Step(r"and $\sum_i y_i = 1$ collapses it to", _latex_eq(_D_LOSS_Z(T), full)),
        Step(
            r"The single term $L_t = -y_t \log \hat{y}_t$ sees $z_t$ only through $\hat{y}_t$, whose logarithm"
            r" changes with $z_t$ at the rate $1 - \hat{y}_t$:",
            _written_eq(_D_TERM_Z(), written_term, term),
        ),
        Step(
            r"Their difference $\Delta = \partial L / \partial z_t - \partial L_t / \partial z_t$ factorises as",
            _written_eq(sp.Symbol(r"\Delta"), written_gap, gap),
        ),
    )
    return Derivation("6-3", steps, tuple(checks))


def softmax_chain_derivation(classes: int = 7) -> Derivation:
    """The chain rule step by step, for `classes` classes: dL/dyhat_i, the softmax Jacobian, their product summed,
    and log yhat_t, each proved against SymPy's derivative of the definitions."""
    k = classes
    yh, ys = [YHAT[i] for i in range(1, k + 1)], [Y[i] for i in range(1, k + 1)]
    soft = [_softmax(i, CLASSES).subs(CLASSES, k).doit() for i in range(1, k + 1)]
    loss_of_yhat = -sum(y * sp.log(p) for y, p in zip(ys, yh))
    d_yhat = _u(sp.Mul, -1, Y[I], _inv(YHAT[I]))
    diag = _u(sp.Mul, YHAT[T], _u(sp.Add, 1, -YHAT[T]))
    off = _u(sp.Mul, -1, YHAT[I], YHAT[T])
    to_soft = lambda e: e.xreplace({YHAT[i]: soft[i - 1] for i in range(1, k + 1)})  # noqa: E731
    checks = [
        compare("dL/dyhat_i = -y_i / yhat_i", "", [sp.diff(loss_of_yhat, YHAT[i]) for i in range(1, k + 1)],
                [d_yhat.xreplace({I: i}) for i in range(1, k + 1)]),
        compare("d yhat_t / d z_t = yhat_t (1 - yhat_t)", "", [sp.diff(soft[q - 1], Z[q]) for q in range(1, k + 1)],
                [to_soft(diag.xreplace({T: q})) for q in range(1, k + 1)]),
        compare("d yhat_i / d z_t = -yhat_i yhat_t (i != t)", "",
                [sp.diff(soft[i - 1], Z[q]) for i in range(1, k + 1) for q in range(1, k + 1) if i != q],
                [to_soft(off.xreplace({I: i, T: q})) for i in range(1, k + 1) for q in range(1, k + 1) if i != q]),
    ]
    chain = [sum((d_yhat * (diag if i == q else off)).xreplace({I: i, T: q}) for i in range(1, k + 1))
             for q in range(1, k + 1)]
    collected = _u(sp.Add, _u(sp.Mul, YHAT[T], sp.Sum(Y[I], (I, 1, CLASSES))), -Y[T])
    checks.append(compare("sum over i of dL/dyhat_i dyhat_i/dz_t = yhat_t sum_i y_i - y_t", "", chain,
                          [collected.subs(CLASSES, k).doit().xreplace({T: q}) for q in range(1, k + 1)]))
    log_form = _u(sp.Add, Z[T], -sp.log(sp.Sum(sp.exp(Z[J]), (J, 1, CLASSES)), evaluate=False))
    checks.append(compare("log yhat_t = z_t - log sum_j exp z_j", "",
                          [sp.expand_log(sp.log(soft[q - 1]), force=True) for q in range(1, k + 1)],
                          [sp.expand_log(log_form.xreplace({T: q}).subs(CLASSES, k).doit(), force=True)
                           for q in range(1, k + 1)]))
    jacobian = sp.Piecewise((diag, sp.Eq(I, T)), (off, True), evaluate=False)
    steps = (
        Step(r"The loss sees the logits only through the probabilities: $L = -\sum_i y_i \log \hat{y}_i$, so",
             _written_tex(sp.Eq(_partial("L", r"\hat{y}")(I), d_yhat, evaluate=False))),
        Step(r"Each probability depends on every logit, through the shared denominator (the softmax Jacobian):",
             _written_tex(sp.Eq(sp.Symbol(r"\frac{\partial \hat{y}_{i}}{\partial z_{t}}"), jacobian,
                                evaluate=False))),
        Step(r"The chain rule sums over all $\hat{y}_i$; the term $i = t$ and the others give",
             r"\frac{\partial L}{\partial z_{t}} = \sum_{i} \frac{\partial L}{\partial \hat{y}_{i}} "
             r"\frac{\partial \hat{y}_{i}}{\partial z_{t}} = - y_{t} \left(1 - \hat{y}_{t}\right) "
             r"+ \sum_{i \neq t} y_{i} \hat{y}_{t} = " + _written_tex(collected)),
        Step(r"For the single term $L_t$ it is simpler to take the logarithm of the softmax first:",
             _written_tex(sp.Eq(sp.log(YHAT[T]), log_form, evaluate=False))),
    )
    return Derivation("6-3 chain", steps, tuple(checks))


def softmax_tf_check(
    classes: int = 7, batch: int = 16, seed: int = 0, full: sp.Expr = SOFTMAX_FULL, term: sp.Expr = SOFTMAX_TERM
) -> tuple[NumericCheck, NumericCheck]:
    """Closed forms vs tf.GradientTape on softmax_cross_entropy_with_logits (soft and one-hot labels)."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    z = tf.Variable(rng.normal(0.0, 2.0, size=(2 * batch, classes)))
    soft = rng.dirichlet(np.ones(classes), size=batch)
    onehot = np.eye(classes)[rng.integers(0, classes, size=batch)]
    y = tf.constant(np.concatenate([soft, onehot]))
    full, term = (sp.lambdify((YHAT[T], Y[T]), e, "numpy") for e in (full, term))
    with tf.GradientTape(persistent=True) as tape:
        loss = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=z))
        terms = [tf.reduce_sum(-y[:, t] * tf.nn.log_softmax(z)[:, t]) for t in range(classes)]
    yhat = tf.nn.softmax(z).numpy()
    full_diff = float(np.max(np.abs(tape.gradient(loss, z).numpy() - full(yhat, y.numpy()))))
    term_grads = np.stack([tape.gradient(terms[t], z).numpy()[:, t] for t in range(classes)], axis=1)
    term_diff = float(np.max(np.abs(term_grads - term(yhat, y.numpy()))))
    cases = 2 * batch * classes
    return (
        NumericCheck("dL/dz vs tf.nn.softmax_cross_entropy_with_logits", cases, full_diff, TF_TOL),
        NumericCheck("dL_t/dz_t vs tf.GradientTape on the single term", cases, term_diff, TF_TOL),
    )


# ---------------------------------------------------------------------------------------------
# Strict entry point
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """Everything chapter 6 shows, all checks already passed."""

    m: int
    classes: int
    conv: Derivation
    conv_counting: NumericCheck
    conv_tf: NumericCheck
    batchnorm: Derivation
    batchnorm_general: Derivation
    batchnorm_local: Derivation
    batchnorm_tf: tuple[NumericCheck, ...]
    softmax: Derivation
    softmax_general: Derivation
    softmax_chain: Derivation
    softmax_tf: tuple[NumericCheck, ...]

    @property
    def softmax_steps(self) -> tuple[Step, ...]:
        """6-3 in reading order: the definitions, the chain rule step by step, SymPy's own derivative, the single
        term through the logarithm, and the difference of the two gradients."""
        general, chain = self.softmax_general.steps, self.softmax_chain.steps
        return (*general[:2], *chain[:3], *general[2:4], *chain[3:], *general[4:])

    @property
    def symbolic(self) -> list[Check]:
        """Every SymPy check."""
        ders = (self.conv, self.batchnorm, self.batchnorm_general, self.batchnorm_local, self.softmax,
                self.softmax_general, self.softmax_chain)
        return [c for d in ders for c in d.checks]

    @property
    def numeric(self) -> list[NumericCheck]:
        """Every numeric cross-check."""
        return [self.conv_counting, self.conv_tf, *self.batchnorm_tf, *self.softmax_tf]

    @property
    def tensorflow(self) -> list[NumericCheck]:
        """The numeric cross-checks against TensorFlow."""
        return [self.conv_tf, *self.batchnorm_tf, *self.softmax_tf]

    @property
    def max_abs_diff(self) -> float:
        """Largest absolute difference seen across the TensorFlow cross-checks."""
        return max(c.max_abs_diff for c in self.tensorflow)


def verify_all(m: int = 4, classes: int = 7) -> Verification:
    """Run every derivation and cross-check; raise DerivationError if any failed."""
    result = Verification(
        m=m,
        classes=classes,
        conv=conv_derivation(),
        conv_counting=conv_exhaustive_check(),
        conv_tf=conv_tf_check(),
        batchnorm=batchnorm_derivation(m),
        batchnorm_general=batchnorm_derivation(None),
        batchnorm_local=batchnorm_local_derivation(),
        batchnorm_tf=batchnorm_tf_check(m),
        softmax=softmax_derivation(classes),
        softmax_general=softmax_derivation(None),
        softmax_chain=softmax_chain_derivation(classes),
        softmax_tf=softmax_tf_check(classes),
    )
    require([*result.symbolic, *result.numeric])
    return result
