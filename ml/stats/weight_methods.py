"""One entry point for the weighting methods: logistic IPTW, entropy balancing and overlap weights.

`estimate_weights(df, confounders, method, estimand)` returns an object with the fields of
`weighting.IPTW` (weights, treated, confounders, estimand, diagnostics, model, ...), so the
analysis can swap methods. The estimand is named the way the literature does (ATE, ATT, ATO);
ATO (the overlap population) is what `weighting.iptw_weights` calls "overlap".
"""

from __future__ import annotations

import pandas as pd

from features import schema
from ml.stats.entropy import METHOD as EBAL_METHOD
from ml.stats.entropy import EntropyBalance, estimate_entropy_balance
from ml.stats.weighting import DEFAULT_CONFOUNDERS, IPTW, estimate_iptw

METHODS = {
    "logistic": "inverse probability of treatment weights from an unpenalised logistic propensity "
                "model (ATE: 1/e and 1/(1-e), stabilised by P(group); ATT: 1 and e/(1-e))",
    "ebal": EBAL_METHOD,
    "overlap": "overlap weights (Li, Morgan & Zaslavsky 2018): 1-e for treated, e for controls, from "
               "the logistic propensity model; estimand ATO (the population where both treatments "
               "are plausible); with an unpenalised logistic model they balance the design means "
               "exactly",
}
"""What each weighting method is, for the methods text."""

ESTIMANDS = {"logistic": ("ate", "att", "ato"), "ebal": ("ate", "att"), "overlap": ("ato",)}
"""The estimands each method can target."""

_ALIASES = {"overlap": "ato"}  # weighting.iptw_weights' name for ATO


def normalise_estimand(estimand: str) -> str:
    """'ATE' / 'att' / 'ATO' / 'overlap' -> 'ate' / 'att' / 'ato'."""
    e = estimand.strip().lower()
    return _ALIASES.get(e, e)


def check_method(method: str, estimand: str) -> tuple[str, str]:
    """The (method, estimand) pair, checked; ValueError naming the setting if they do not fit."""
    if method not in METHODS:
        raise ValueError(f"unknown weighting method '{method}' (setting 'method'); expected one of "
                         f"{', '.join(METHODS)}")
    e = normalise_estimand(estimand)
    if e not in ESTIMANDS[method]:
        raise ValueError(f"weighting method '{method}' cannot target estimand '{estimand}' (setting "
                         f"'estimand'); it supports {', '.join(x.upper() for x in ESTIMANDS[method])}")
    return method, e


def estimate_weights(df: pd.DataFrame, confounders: tuple[str, ...] | list[str] = DEFAULT_CONFOUNDERS,
                     method: str = "logistic", estimand: str = "ate", stabilized: bool = True,
                     truncate: tuple[float, float] | None = None, group: str = schema.TREATMENT,
                     treated: str = schema.TREATED, control: str = schema.CONTROL
                     ) -> IPTW | EntropyBalance:
    """Weights of one cohort by `method` for `estimand` (see METHODS and ESTIMANDS).

    `stabilized` and `truncate` apply to the propensity-score methods only; entropy balancing
    refuses truncation (it would undo the exact balance). The result's `estimand` is the
    weighting module's name ("ate", "att" or "overlap" for ATO).
    """
    method, e = check_method(method, estimand)
    if method == "ebal":
        if truncate is not None:
            raise ValueError("truncate cannot be combined with method 'ebal': capping the weights "
                             "would undo the exact balance; remove 'truncate' or use 'logistic'")
        return estimate_entropy_balance(df, confounders, e, group, treated, control)
    iptw_estimand = "overlap" if e == "ato" else e
    return estimate_iptw(df, confounders, iptw_estimand, stabilized, truncate, group, treated, control)
