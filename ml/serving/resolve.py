"""Where a scorer comes from: fitted here, loaded from a model URI, or the registry's default.

    scorer, uri, notes = resolve_scorer(None)     # the champion of rechallenge-pfs-cox_ridge_cv
                                                  # (fitted on the twin and registered if none)
    scorer, notes = load_scorer("models:/rechallenge-pfs-rsf@champion")

MLflow is reached through `ml.tracking` only; the survival pyfunc's signature comes from
`SurvivalScorer.pyfunc_contract()`.
"""

from __future__ import annotations

from typing import Any

from features import datasets
from ml import models
from ml.serving.model_card import card_tags
from ml.serving.scorer import SurvivalScorer
from ml.tracking import mlflow_io as tracking

DEFAULT_MODEL = "cox_ridge_cv"
"""The default model family: a ridge Cox whose penalty is chosen on the training rows by
cross-validated partial likelihood (`ml.models.cox_cv.CoxPHCV`). The plain `cox` (ridge 0.01)
with its 18 columns on the 101-patient twin is overfit (out-of-fold calibration slope about
0.5); this one's slope is about 1 (benchmarks/calibration_default.py)."""
DEFAULT_REGISTERED_NAME = f"rechallenge-pfs-{DEFAULT_MODEL}"
DEFAULT_MODEL_URI = f"models:/{DEFAULT_REGISTERED_NAME}@{tracking.CHAMPION_ALIAS}"


def fit_scorer(model: str = DEFAULT_MODEL, data: Any = None, random_state: int | None = 0,
               **params: Any) -> SurvivalScorer:
    """Fit model family `model` on `data` (a `features.datasets.SurvivalData`; default: the
    study-sized twin cohort) and wrap it with cut-offs fixed on the same rows."""
    data = data if data is not None else datasets.twin()
    pipeline = models.fit_full(model, data.spec, data.X, data.y, random_state=random_state,
                               treatment_column=data.treatment_column, **params)
    return SurvivalScorer(pipeline, model_name=model, random_state=random_state).fit(data.X, data.y)


def scorer_from(obj: Any, reference: Any = None) -> tuple[SurvivalScorer, list[str]]:
    """A SurvivalScorer from what a model URI held: the scorer itself (the survival pyfunc),
    or a bare fitted pipeline (e.g. a model registered by `rechallenge tune` with the
    sklearn flavour), whose cut-offs are then fixed on a reference cohort (default: the
    study-sized twin) and said so in the returned notes."""
    if isinstance(obj, SurvivalScorer):
        return obj, []
    if not hasattr(obj, "predict_survival_function") or not hasattr(obj, "steps"):
        raise ValueError(f"the model is a {type(obj).__name__}, not a survival pipeline or scorer")
    data = reference if reference is not None else datasets.twin()
    scorer = SurvivalScorer(obj, model_name=type(obj.steps[-1][1]).__name__).fit(data.X)
    note = (f"the model carries no risk-group cut-offs: they were fixed on {data.name} "
            "(the default reference cohort)")
    return scorer, [note]


def load_scorer(model_uri: str) -> tuple[SurvivalScorer, list[str]]:
    """The scorer behind a model URI or path, with notes (ValueError if there is none)."""
    return scorer_from(tracking.load_survival_model(model_uri))


def register_default_scorer() -> tuple[SurvivalScorer, str, list[str]]:
    """Fit the default model (`DEFAULT_MODEL`) on the study-sized twin cohort and register it as
    the champion of `DEFAULT_REGISTERED_NAME`; (scorer, URI, a note saying so)."""
    data = datasets.twin()
    scorer = fit_scorer(DEFAULT_MODEL, data)
    # the model card's figures (bootstrap-validated C and calibration slope): in the scorer and as tags
    tags = {"data": data.name, "origin": "default model (rechallenge score)",
            **card_tags(scorer, data, simulated=True)}
    reg = tracking.register_survival_model(scorer, DEFAULT_REGISTERED_NAME, tags=tags)
    alpha = scorer.pipeline.model_.alpha_
    note = (f"no model was registered as {DEFAULT_REGISTERED_NAME}: fitted the default model "
            f"{DEFAULT_MODEL} (ridge Cox, penalty {alpha:.3g} chosen by cross-validated partial "
            f"likelihood) on {data.name} and registered it as version {reg['version']} with alias champion")
    return scorer, reg["uri"], [note]


def registered_version(model_uri: str | None) -> dict[str, Any] | None:
    """The registry's record of the version behind a models:/ URI (None for other URIs)."""
    return tracking.model_version(model_uri) if model_uri else None


def resolve_scorer(model_uri: str | None = None) -> tuple[SurvivalScorer, str, list[str]]:
    """(scorer, URI, notes) for the CLI and the service.

    With `model_uri`: what it holds (a survival pyfunc, or a sklearn-flavoured pipeline).
    Without: the champion of `DEFAULT_REGISTERED_NAME`; if the registry has none, the default
    model is fitted on the study-sized twin cohort and registered there as the
    champion, and a note says so. Raises ValueError when the URI holds nothing usable.
    """
    uri = model_uri or DEFAULT_MODEL_URI
    if not model_uri and tracking.champion(DEFAULT_REGISTERED_NAME) is None:
        return register_default_scorer()
    scorer, notes = load_scorer(uri)
    return scorer, uri, notes
