"""Causal survival analysis: adjusted survival curves (IPTW, G-formula, AIPTW) and RMST.

`adjusted.adjusted_survival` is the whole step on a cohort; `rmst.rmst2` the unadjusted
RMST comparison (R survRM2's); `estimators` and `nuisance` the array-level pieces.
"""
