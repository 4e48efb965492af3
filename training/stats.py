"""Statistics for comparing configurations run several times: summaries, Welch's t-test, collapse.

Pure functions of plain numbers (scipy for the t distribution), so the API's comparison table and
the tests share one definition of every figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as scipy_stats

CONFIDENCE = 0.95
ALPHA = 0.05
WELCH_METHOD = "Welch's two-sided t-test (unequal variances), alpha 0.05"
CI_METHOD = "95% confidence interval of the mean, Student t with n - 1 degrees of freedom"
# A run is collapsed when its accuracy is this close to what predicting without looking would score.
COLLAPSE_TOLERANCE = 0.015
COLLAPSE_RULE = (
    "collapsed: test accuracy within 1.5 points of chance, chance being the test split's majority-class rate "
    "or 1 / number of classes (the network predicts about as well as a constant answer)"
)


@dataclass(frozen=True)
class Summary:
    """n, mean, sample standard deviation and the 95% t interval of the mean of some values."""

    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class Welch:
    """Welch's t-test of two samples: statistic, Welch-Satterthwaite degrees of freedom, two-sided p-value."""

    statistic: float | None
    df: float | None
    p_value: float
    distinguishable: bool


def summarize(values: Sequence[float]) -> Summary:
    """Mean, sample std (n - 1) and the Student t 95% interval; std and interval need at least two values."""
    n = len(values)
    if n == 0:
        return Summary(0, None, None, None, None)
    mean = math.fsum(values) / n
    if n == 1:
        return Summary(1, mean, None, None, None)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def welch(a: Sequence[float], b: Sequence[float]) -> Welch | None:
    """Welch's two-sided t-test at alpha 0.05; None when either side has fewer than two values (nothing to test)."""
    if len(a) < 2 or len(b) < 2:
        return None
    sa, sb = summarize(a), summarize(b)
    assert sa.mean is not None and sb.mean is not None and sa.std is not None and sb.std is not None
    if sa.std == 0 and sb.std == 0:
        # No spread on either side: the t statistic is undefined (0/0) or infinite; the means say it all.
        same = sa.mean == sb.mean
        return Welch(None, None, 1.0 if same else 0.0, not same)
    result = scipy_stats.ttest_ind(a, b, equal_var=False)
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n
    df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
    p_value = float(result.pvalue)
    return Welch(float(result.statistic), df, p_value, p_value < ALPHA)


def chance_levels(class_counts: Sequence[int]) -> tuple[float, float]:
    """(majority-class rate, 1 / number of classes) of a split with these class counts."""
    total = sum(class_counts)
    majority = max(class_counts) / total if total else 0.0
    return majority, 1.0 / len(class_counts) if class_counts else 0.0


def is_collapsed(accuracy: float, class_counts: Sequence[int]) -> bool:
    """Whether `accuracy` is within 1.5 points of the majority-class rate or of 1 / number of classes."""
    return any(abs(accuracy - level) <= COLLAPSE_TOLERANCE for level in chance_levels(class_counts))
