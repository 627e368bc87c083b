"""Checks that a cohort can carry an IPTW comparison: both groups, usable confounders, overlap.

Each check raises `CausalInputError` with a message naming the column, level or group at
fault, or warns (`SeparationWarning`) where the analysis can go on but says less.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from features import schema
from features.contract import level_name
from features.errors import InputWarning
from ml.stats.balance import covariate_levels
from ml.stats.errors import CausalInputError, SeparationWarning

PROPENSITY_EPS = 1e-8
"""A propensity this close to 0 or 1 on the wrong side of its group gives an infinite weight."""


def group_sizes(df: pd.DataFrame, group: str = schema.TREATMENT, treated: str = schema.TREATED,
                control: str = schema.CONTROL) -> dict[str, int]:
    """Patients per group; raise if either group is empty (nothing to compare)."""
    sizes = {g: int((df[group] == g).sum()) for g in (treated, control)}
    if min(sizes.values()) == 0:
        found = ", ".join(f"{g}: {k}" for g, k in sizes.items())
        raise CausalInputError(
            f"a treatment comparison needs patients in both groups, found {found} "
            f"(column '{group}'); IPTW, log-rank and the treatment hazard ratio are undefined"
        )
    return sizes


def _require_observed(df: pd.DataFrame, cov: str) -> pd.Series | None:
    """The confounder's values; None (with a warning) when it is missing on every row."""
    if cov not in df.columns:
        raise CausalInputError(f"confounder '{cov}' is not a column of the cohort table")
    values = df[cov]
    if values.isna().all():
        warnings.warn(f"confounder '{cov}' is missing on every row: left out of the propensity model "
                      "(the weights cannot balance it, and its balance cannot be checked)",
                      InputWarning, stacklevel=3)
        return None
    return values


def _refuse_constant_within_a_group(cov: str, values: pd.Series, groups: dict[str, np.ndarray]
                                    ) -> None:
    for label, mask in groups.items():
        in_group = values[mask].dropna()
        if len(in_group) and in_group.nunique() == 1:
            raise CausalInputError(
                f"confounder '{cov}' is '{level_name(in_group.iloc[0])}' for every patient "
                f"in {label} ({len(in_group)} patients) but varies in the other: the "
                "propensity model is separated on it and no weighting can balance it "
                "(positivity violated); drop it from the confounders or check the data"
            )


def _warn_levels_in_one_group(cov: str, values: pd.Series, groups: dict[str, np.ndarray]) -> None:
    (treated, is_t), (control, _) = groups.items()
    for level in covariate_levels(cov, values) or []:
        at_level = (values == level).to_numpy()
        n_t, n_c = int((at_level & is_t).sum()), int((at_level & ~is_t).sum())
        if (n_t == 0) != (n_c == 0):
            only = treated if n_c == 0 else control
            warnings.warn(
                f"confounder level {cov}={level_name(level)} occurs only in {only} "
                f"({n_t + n_c} patients): its propensity log-odds diverge (quasi-complete "
                "separation) and the weighted comparison says nothing about these patients",
                SeparationWarning, stacklevel=3)


def check_confounders(df: pd.DataFrame, confounders: tuple[str, ...] | list[str],
                      group: str = schema.TREATMENT, treated: str = schema.TREATED,
                      control: str = schema.CONTROL) -> tuple[str, ...]:
    """The confounders a propensity model can use; raise or warn on the ones it cannot.

    - a confounder missing from the table: error;
    - missing on every row: dropped with an `InputWarning` naming it;
    - constant in the whole cohort: dropped with a warning (it cannot confound);
    - constant within one group but not the other: error. The propensity model is then
      separated on it, and no weighting can make the groups comparable on it
      (positivity is violated for the patients the other group does not have);
    - a category level present in one group only (a rare level, say): warning, the
      model's log-odds for that level diverge and those patients get a propensity of
      about 0 or 1, so the estimate says nothing about them.
    """
    is_t = (df[group] == treated).to_numpy()
    groups = {treated: is_t, control: ~is_t}
    usable = []
    for cov in confounders:
        values = _require_observed(df, cov)
        if values is None:
            continue
        observed = values.dropna()
        if observed.nunique() < 2:
            warnings.warn(f"confounder '{cov}' has one value ({observed.iloc[0]}) for every patient; "
                          "left out of the propensity model", SeparationWarning, stacklevel=2)
            continue
        _refuse_constant_within_a_group(cov, values, groups)
        _warn_levels_in_one_group(cov, values, groups)
        usable.append(cov)
    if not usable:
        raise CausalInputError("no usable confounder left for the propensity model")
    return tuple(usable)


def check_separation(propensity: np.ndarray, treated: np.ndarray) -> None:
    """Raise if the fitted propensity separates the groups or hits 0/1 on the wrong side.

    Perfect separation makes the logistic MLE infinite: propensities collapse to 0 and
    1 and the IPTW weights of any patient 'on the wrong side' become infinite.
    """
    e = np.asarray(propensity, dtype=float)
    t = np.asarray(treated, dtype=bool)
    if not np.all(np.isfinite(e)):
        raise CausalInputError("the propensity model returned non-finite probabilities")
    complete = e[t].min() > e[~t].max() or e[t].max() < e[~t].min()
    wrong_side = np.sum(t & (e < PROPENSITY_EPS)) + np.sum(~t & (e > 1 - PROPENSITY_EPS))
    if complete or wrong_side:
        raise CausalInputError(
            "perfect separation in the propensity model: the confounders predict the treatment "
            "group exactly" + ("" if complete else f" for {int(wrong_side)} patient(s) in the "
                               "opposite group, whose weights would be infinite")
            + "; IPTW is not possible. Remove the confounder(s) that determine treatment "
            "(look at Table 1 for a covariate with no overlap between the groups)"
        )
