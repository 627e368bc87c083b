"""The model card: what the served model is, what trained it, how well it validated, what it is for.

    tags = card_tags(scorer, data, n_bootstrap=50)    # at registration: version tags (flat text)
    card = model_card(scorer, registered)             # for /health, the page and `rechallenge score`
    lines = card_lines(card)                          # the same in words, one fact per line

The figures are computed once, when the default model is registered (`card_tags`), kept in the
scorer (`scorer.card_`, so they travel inside the pyfunc) and written as MLflow version tags
(`card.*`). Validated C-index and calibration slope: Harrell's bootstrap optimism correction
(`ml.evaluation.validation.bootstrap_validation`, R rms `validate`) with B resamples; for a model
whose penalty was chosen by cross-validation (cox_ridge_cv) the refits keep the chosen penalty
fixed (so the optimism of choosing it is not counted: the correction is a little optimistic),
which keeps registration to a few seconds. The interval shown with each corrected figure is the
percentile bootstrap interval of the apparent figure (2.5-97.5 percentiles of apparent_b, each
resample's model on its own resample) shifted by the estimated optimism.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn.base import clone

from ml.evaluation.validation import bootstrap_validation, events_per_variable
from ml.models.cox import CoxPH

CARD_PREFIX = "card."
CARD_HORIZON = ("12m", 12.0)
CARD_BOOTSTRAP = 50
SIMULATED = "simulated cohort, not patients"
INTENDED_USE = ("Research use: the predicted progression-free survival of one adult with advanced NSCLC "
                "starting second-line chemo-immunotherapy (with or without an anti-angiogenic) after "
                "first-line immunotherapy, from the baseline record of the form.")
LIMITS = ("Not validated externally; not for clinical decisions on its own. Predictions are only as good "
          "as the training cohort is like your patient; the difference between regimens is the model's "
          "association adjusted for the recorded covariates, not a randomised comparison.")
VALIDATION_METHOD = ("Harrell's bootstrap optimism correction (R rms validate), B = {b} resamples, "
                     "seed {seed}"
                     "{penalty}; 95% interval: the bootstrap percentile interval of the apparent figure "
                     "(2.5-97.5 percentiles over the resamples) shifted by the optimism")
METRICS = {"harrell_c": "C-index (Harrell)", "calibration_slope_12m": "calibration slope at 12 months"}


def refit_template(pipeline: Any) -> tuple[Any, str]:
    """An unfitted copy of `pipeline` for resampling, and what was changed: a model that chose its
    ridge penalty from the data (`alpha_`, e.g. cox_ridge_cv) becomes a ridge Cox at that penalty."""
    template = clone(pipeline)
    model = pipeline.steps[-1][1]
    alpha = getattr(model, "alpha_", None)
    if alpha is None or not isinstance(model, CoxPH):
        return template, ""
    fixed = CoxPH(alpha=float(alpha), ties=model.ties, max_iter=model.max_iter, tol=model.tol)
    template.set_params(**{pipeline.steps[-1][0]: fixed})
    return template, f"; the penalty fixed at the chosen {float(alpha):.3g} in the refits"


def validation_figures(scorer: Any, data: Any, n_bootstrap: int = CARD_BOOTSTRAP,
                       seed: int = 2024) -> dict[str, Any]:
    """Optimism-corrected C-index and calibration slope at 12 months with their intervals."""
    template, penalty = refit_template(scorer.pipeline)
    label, h = CARD_HORIZON
    X = data.X.reset_index(drop=True)
    result = bootstrap_validation(lambda Xb, yb: clone(template).fit(Xb, yb), X, data.y,
                                  horizons={label: h}, tau=data.tau, n_bootstrap=n_bootstrap, seed=seed)
    summary = result.summary.set_index("metric")
    out: dict[str, Any] = {"validation_method": VALIDATION_METHOD.format(b=n_bootstrap, seed=seed,
                                                                          penalty=penalty)}
    for metric in METRICS:
        own = result.resamples.loc[result.resamples["metric"] == metric, "apparent"].dropna()
        optimism = float(summary.loc[metric, "optimism"])
        low, high = np.percentile(own, [2.5, 97.5]) - optimism if len(own) else (math.nan, math.nan)
        out[metric] = float(summary.loc[metric, "corrected"])
        out[f"{metric}_low"], out[f"{metric}_high"] = float(low), float(high)
    return out


def training_facts(scorer: Any, data_name: str, simulated: bool) -> dict[str, Any]:
    """n, events, model columns and events per variable of the training rows."""
    events = getattr(scorer, "events_", None)
    columns = len(scorer.columns_)
    return {"data": data_name, "simulated": simulated, "n": int(scorer.n_train_),
            "events": None if events is None else int(events), "columns": columns,
            "epv": None if events is None else round(events_per_variable(events, columns), 2)}


def card_tags(scorer: Any, data: Any, *, simulated: bool,
              n_bootstrap: int = CARD_BOOTSTRAP) -> dict[str, Any]:
    """The card's figures (training facts and validation), stored in `scorer.card_` and returned
    as flat version tags `card.<key>`."""
    facts = {**training_facts(scorer, data.name, simulated), **validation_figures(scorer, data, n_bootstrap)}
    scorer.card_ = facts
    return {f"{CARD_PREFIX}{k}": v for k, v in facts.items()}


def _from_tags(tags: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tags.items():
        if not key.startswith(CARD_PREFIX):
            continue
        name = key.removeprefix(CARD_PREFIX)
        try:
            out[name] = float(value) if name not in ("data", "validation_method", "simulated") else value
        except ValueError:
            out[name] = None
    for name in ("n", "events", "columns"):
        if out.get(name) is not None:
            out[name] = int(out[name])
    if "simulated" in out:
        out["simulated"] = out["simulated"] == "True"
    return out


def model_card(scorer: Any, registered: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The card: family, version, registration time, training data, figures, intended use, limits.

    `registered`: the registry's record of the version (`ml.tracking` model_version), if any; its
    `card.*` tags win over what the scorer carries."""
    facts = {**getattr(scorer, "card_", {}), **_from_tags((registered or {}).get("tags", {}))}
    if not facts:
        facts = training_facts(scorer, "not recorded", False)
    info = scorer.info()
    data = str(facts.get("data", "not recorded"))
    return {
        "family": info["model"],
        "version": (registered or {}).get("version"),
        "registered_name": (registered or {}).get("name"),
        "registered": (registered or {}).get("registered"),
        "trained_on": f"{data}: {SIMULATED}" if facts.get("simulated") else data,
        "simulated": bool(facts.get("simulated", False)),
        **{k: facts.get(k) for k in ("n", "events", "columns", "epv")},
        "validation": {metric: {"estimate": facts.get(metric), "low": facts.get(f"{metric}_low"),
                                "high": facts.get(f"{metric}_high"), "label": label}
                       for metric, label in METRICS.items() if facts.get(metric) is not None},
        "validation_method": facts.get("validation_method", "no internal validation recorded"),
        "intended_use": INTENDED_USE,
        "limits": LIMITS,
    }


def _number(x: Any, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def card_lines(card: Mapping[str, Any]) -> list[str]:
    """The card in words, one fact per line (the CLI prints it; the page builds the same)."""
    version = f" version {card['version']} of {card['registered_name']}" if card.get("version") else ""
    when = f", registered {card['registered']}" if card.get("registered") else ""
    lines = [f"model: {card['family']}{version}{when}",
             f"trained on: {card['trained_on']}",
             f"n = {card['n']}, events = {card.get('events') or 'n/a'}, model columns = {card['columns']}, "
             f"events per variable = {_number(card.get('epv'), 1)}"]
    for figure in card["validation"].values():
        lines.append(f"validated {figure['label']}: {_number(figure['estimate'])} "
                     f"(95% interval {_number(figure['low'])} to {_number(figure['high'])})")
    lines += [f"validation: {card['validation_method']}", f"intended use: {card['intended_use']}",
              f"limits: {card['limits']}"]
    return lines
