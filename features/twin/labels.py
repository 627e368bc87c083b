"""The twin's categories in draw order, checked against the contract, and its design terms.

The generator draws a categorical covariate as an integer code: a position in that column's
draw order below (a two-level column is drawn as a boolean: True is its second label, e.g.
`p_male` draws "male"). The draw order is part of the random-number stream, so it is written
out here and never taken from the contract's level order (reordering the contract must not
change a cohort). It is checked at import against the contract's levels, so a label can
neither drift nor go missing.
"""

from __future__ import annotations

from collections.abc import Mapping

from features.contract import BY_NAME, COVARIATES, FEATURES, TREATED, TREATMENT, design_terms, term

DRAW_ORDER: dict[str, tuple[str, ...]] = {
    "sex": ("female", "male"),
    "smoking": ("never", "ever"),
    "ecog": ("0", "1", "2"),
    "histology": ("adenocarcinoma", "squamous", "other"),
    "pdl1": ("<1%", "1-49%", ">=50%", "not tested"),
    "prior_response": ("CR/PR", "SD", "PD"),
    "brain_mets": ("no", "yes"),
    "liver_mets": ("no", "yes"),
    "bone_mets": ("no", "yes"),
    "ici_switch": ("no", "yes"),
    TREATMENT: ("CI", "CIA"),
}
"""Labels of each categorical feature in the order the generator codes them (0, 1, ...)."""

TREATMENT_TERM = term(TREATMENT, TREATED)
COVARIATE_TERMS: tuple[str, ...] = design_terms()
"""Design terms from the contract (treatment coding against the reference level; age in years,
pfs1 in months), in the contract's column order."""
HAZARD_TERMS: tuple[str, ...] = (TREATMENT_TERM, *COVARIATE_TERMS)

NOISE_FEATURES: tuple[str, ...] = ("age", "sex", "histology", "bone_mets", "ici_switch")
"""Columns with no true effect on PFS; a good explanation ranks them low."""


def check_draw_orders(orders: Mapping[str, tuple[str, ...]]) -> None:
    """Raise ValueError unless `orders` lists, for every categorical feature of the contract,
    exactly that feature's levels (in any order, each once)."""
    expected = {name: BY_NAME[name].level_names() for name in FEATURES if BY_NAME[name].categorical}
    missing = [name for name in expected if name not in orders]
    if missing:
        raise ValueError(f"twin: no draw order for the contract's categorical feature '{missing[0]}'")
    for name, order in orders.items():
        if name not in expected:
            raise ValueError(f"twin: draw order for '{name}', not a categorical feature of the contract")
        if sorted(order) != sorted(expected[name]):
            raise ValueError(f"twin: draw order of '{name}' ({', '.join(order)}) does not list the "
                             f"contract's levels ({', '.join(expected[name])})")


def _check_noise_features() -> None:
    unknown = [name for name in NOISE_FEATURES if name not in COVARIATES]
    if unknown:
        raise ValueError(f"twin: noise feature '{unknown[0]}' is not a covariate of the contract")


check_draw_orders(DRAW_ORDER)
_check_noise_features()
