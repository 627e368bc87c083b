"""Why a comparison of the treatment groups cannot be run, or should be read with care."""

from __future__ import annotations


class CausalInputError(ValueError):
    """A cohort on which a causal (IPTW) analysis cannot be run, with the reason."""


class ExtremeWeightsWarning(UserWarning):
    """IPTW weights so uneven that a few patients carry a group (the ESS says how few)."""


class SeparationWarning(UserWarning):
    """A confounder level seen in one group only: its propensity log-odds diverge."""
