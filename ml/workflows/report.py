"""`rechallenge report`: analyze, benchmark, validate and explain one cohort in-process and
gather what one self-contained HTML report shows (`ml.reporting.report.ReportContent`).

    settings = ReportSettings()                           # the defaults `make demo` uses
    content = build_report(df, settings, source="twin")   # pure: no I/O, no MLflow
    html = ml.reporting.report.render(content)

Each part runs on its own: a cohort too small for one (e.g. no events in an arm) gives that
part a statement (`content.unavailable`) and the others are still made.
"""

from __future__ import annotations

import importlib.metadata as md
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from features import datasets, twin
from ml import models
from ml.evaluation import decision_curve
from ml.explain import RISK
from ml.reporting.dca import threshold_grid
from ml.reporting.report.content import ReportContent
from ml.stats import km_band
from ml.workflows import analysis, report_parts
from ml.workflows import benchmark as bench
from ml.workflows import explain as wx
from ml.workflows import validation as val

PACKAGES = ("rechallenge", "numpy", "scipy", "pandas", "scikit-learn", "scikit-survival", "xgboost", "shap",
            "matplotlib", "great_tables", "jinja2", "mlflow")
SERVED_MODEL = "cox_ridge_cv"
"""The family `rechallenge score` serves by default (ml.serving.resolve.DEFAULT_MODEL)."""


@dataclass(frozen=True)
class ReportSettings:
    """How much each workflow does: defaults fast enough for `make demo` (a few minutes)."""

    analysis_bootstrap: int | None = 200    # None: the analysis YAML's own `bootstrap`
    km_band_bootstrap: int = 200
    benchmark_models: tuple[str, ...] = ("cox", "cox_ridge_cv", "coxnet", "rsf", "xgb_cox")
    benchmark_folds: int = 5
    benchmark_repeats: int = 2
    validate_model: str = SERVED_MODEL
    validate_bootstrap: int = 50
    explain_models: tuple[str, ...] = ("cox_ridge_cv", "xgb_cox")
    dca_models: tuple[str, ...] = ("cox", "cox_ridge_cv", "rsf")
    nomogram_model: str = SERVED_MODEL
    seed: int = 2024
    n_jobs: int = 1

    def __post_init__(self) -> None:
        for name in {*self.benchmark_models, *self.explain_models, *self.dca_models, self.validate_model,
                     self.nomogram_model}:
            models.check_name(name)


Progress = Callable[[str], None]


def _attempt(content: ReportContent, key: str, step: Callable[[], None]) -> None:
    """Run one part; bad or too little data leaves a statement instead of failing the report."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step()
        content.warnings += [f"{key}: {w.message}" for w in caught
                             if not issubclass(w.category, DeprecationWarning | FutureWarning)][:10]
    except (ValueError, ArithmeticError, KeyError, IndexError) as exc:
        content.unavailable[key] = f"not computed on this cohort: {exc}"


def _analysis_part(content: ReportContent, df: pd.DataFrame, config: analysis.AnalysisConfig,
                   settings: ReportSettings) -> None:
    from ml.workflows import analysis_report

    result = analysis.run_analysis(df, config)
    document = analysis.to_dict(result)
    content.table_one = report_parts.table_one(result)
    content.balance = report_parts.love_frame(result)
    content.balance_threshold = config.balance_threshold
    content.ess = {r.group: float(r.ess) for r in result.iptw.diagnostics.itertuples()}
    content.propensity = (result.iptw.propensity, result.iptw.treated, result.iptw.weights)
    content.km_panels = [report_parts.km_panel(df, result, ep, weighted, settings.km_band_bootstrap,
                                               settings.seed)
                         for ep in ("pfs", "os") for weighted in (False, True)]
    content.survival_table = report_parts.survival_table(result)
    content.iptw_cox = {ep: result.iptw_cox[ep] for ep in result.iptw_cox}
    content.causal = document.get("causal")
    content.forest = {ep: (result.cox_multivariable[ep], result.cox_joint_tests["multivariable"][ep])
                      for ep in result.cox_multivariable}
    content.ph_table = report_parts.ph_table(result)
    content.ph_figures = {f"{ep.upper()}: cox.zph": analysis_report.schoenfeld_figure(result, df, ep)
                          for ep in ("pfs", "os")}
    content.methods["analyze"] = dict(result.methods) | {
        "km_band_weighted": " ".join(km_band.__doc__.split("\n\n")[1].split())}
    content.warnings += result.warnings


def _benchmark_part(content: ReportContent, data: datasets.SurvivalData, settings: ReportSettings) -> None:
    config = bench.load_config(None, models=list(settings.benchmark_models), folds=settings.benchmark_folds,
                               repeats=settings.benchmark_repeats, seed=settings.seed, n_jobs=settings.n_jobs,
                               validation={"bootstrap": 0, "models": []})
    result = bench.run_benchmark(data, config)
    content.leaderboard = result.leaderboard
    content.horizons = dict(result.horizons)
    content.methods["benchmark"] = {"resampling": f"{config.repeats} x {config.folds}-fold cross-validation "
                                    "stratified by the event", "ci": bench.CI_METHOD}


def _validation_part(content: ReportContent, data: datasets.SurvivalData, settings: ReportSettings) -> None:
    bench_config = bench.load_config(None, models=[settings.validate_model], seed=settings.seed)
    config = val.ValidationConfig(data=bench_config, model=settings.validate_model,
                                  bootstrap=settings.validate_bootstrap, seed=settings.seed)
    run = val.run_validation(data, config)
    content.internal = run.result.summary.assign(model=settings.validate_model)
    content.calibration = (run.result.calibration, run.result.smooth)
    content.methods["validate"] = dict(val.METHODS)
    content.warnings += [f"validate: {n}" for n in run.notes]


def _benchmark_reused(content: ReportContent, reused: tuple[dict, pd.DataFrame]) -> None:
    doc, board = reused
    content.leaderboard = board
    content.horizons = {str(k): float(v) for k, v in doc.get("horizons", {}).items()} or content.horizons
    resampling = doc.get("resampling", {})
    folds = f"{resampling.get('repeats')} x {resampling.get('folds')}-fold"
    content.methods["benchmark"] = {"resampling": f"{folds} cross-validation stratified by the event "
                                    "(reused from benchmark.json)",
                                    "ci": doc.get("ci_method", bench.CI_METHOD)}


def _validation_reused(content: ReportContent, doc: dict) -> None:
    rows = [{"metric": k, **v} for k, v in doc["metrics"].items() if k != "epv"]
    content.internal = pd.DataFrame(rows).assign(model=doc["model"])
    content.calibration = (pd.DataFrame(doc.get("calibration", [])),
                           pd.DataFrame(doc.get("calibration_smooth", [])).astype(
                               {"predicted": float, "observed": float}, errors="ignore"))
    content.methods["validate"] = dict(doc.get("methods", val.METHODS)) | {
        "source": f"reused from validation.json (B = {doc.get('bootstrap')}, seed {doc.get('seed')})"}


def reuse_problems(reused: dict[str, Any], n: int) -> list[str]:
    """Reused outputs made on another cohort (their n differs from this one's) are refused."""
    problems = []
    for name, item in reused.items():
        doc = item[0] if isinstance(item, tuple) else item
        if doc.get("n") != n:
            where = doc.get("dataset") or doc.get("data")
            problems.append(f"{name}: made on {doc.get('n')} patients ({where}), not this cohort's {n}")
    return problems


def _dca_part(content: ReportContent, data: datasets.SurvivalData, settings: ReportSettings) -> None:
    content.dca = report_parts.dca_frame(data, list(settings.dca_models), threshold_grid(0.05, 0.95, 0.01),
                                         settings.seed)
    content.methods["decision curves"] = {
        "net benefit": " ".join(decision_curve.__doc__.split()),
        "predictions": "out-of-fold P(event by h) = 1 - S(h|x) from one stratified 5-fold split "
                       f"(seed {settings.seed}); each model refitted, preprocessing included, per fold"}


def _nomogram_part(content: ReportContent, data: datasets.SurvivalData, settings: ReportSettings) -> None:
    content.nomogram, _ = report_parts.nomogram(data, settings.nomogram_model, seed=0)
    content.methods["nomogram"] = {"model": f"{settings.nomogram_model}: "
                                   f"{models.REGISTRY[settings.nomogram_model].description}; fitted on all "
                                   "rows with random_state 0 as `rechallenge score` fits its default model",
                                   "points": content.nomogram.note}


def _explain_part(content: ReportContent, data: datasets.SurvivalData, settings: ReportSettings,
                  is_twin: bool) -> None:
    explained = wx.fit_and_explain(data, list(settings.explain_models), horizon=None,
                                   random_state=settings.seed)
    content.shap = [{"model": e.model, "scale": e.risk.scale, "method": e.risk.method,
                     "frame": report_parts.shap_frame(e.risk, data.spec)} for e in explained]
    if is_twin:
        checks = wx.check_signals(explained, twin.true_log_hazard_ratios(twin.load_config(None)),
                                  noise=twin.NOISE_FEATURES)
        content.signal_check = wx.signal_frame(checks)
    content.methods["explain"] = {"output": f"SHAP of the {RISK} score (the model's own scale, stated per "
                                  "model); a categorical feature's one-hot columns summed into the feature"}


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def build_report(df: pd.DataFrame, settings: ReportSettings | None = None, *,
                 config: analysis.AnalysisConfig | None = None, source: str = "twin",
                 is_twin: bool = True, command: str = "", progress: Progress | None = None,
                 reused: dict[str, Any] | None = None) -> ReportContent:
    """Run every part on the validated cohort `df` and return the report's content. `reused`:
    outputs of earlier runs on the same cohort used instead of running again ("benchmark":
    (benchmark.json, leaderboard.csv frame), "validation": validation.json)."""
    reused = reused or {}
    settings = settings or ReportSettings()
    config = config or analysis.load_config(None)
    if settings.analysis_bootstrap is not None:
        config = config.model_copy(update={"bootstrap": settings.analysis_bootstrap})
    content = ReportContent(study=report_parts.study(df, source, is_twin), command=command,
                            settings=asdict(settings) | {"analysis_bootstrap": config.bootstrap})
    content.methods["data"] = {
        "follow_up": "median follow-up by the reverse Kaplan-Meier (censoring as the event, events as "
                     "censored; Schemper & Smith 1996), with the KM medians' rule (R quantile.survfit)"}
    content.settings["reused"] = ", ".join(reused) or "nothing (every part run here)"
    content.seeds = {"analysis bootstrap": config.seed, "models, folds, validation, DCA": settings.seed,
                     "nomogram fit": 0}
    data = datasets.from_cohort(df, name=source, source=source)
    steps: list[tuple[str, Callable[[], None]]] = [
        ("analysis", lambda: _analysis_part(content, df, config, settings)),
        ("benchmark", lambda: _benchmark_reused(content, reused["benchmark"]) if "benchmark" in reused
         else _benchmark_part(content, data, settings)),
        ("validation", lambda: _validation_reused(content, reused["validation"]) if "validation" in reused
         else _validation_part(content, data, settings)),
        ("decision curves", lambda: _dca_part(content, data, settings)),
        ("nomogram", lambda: _nomogram_part(content, data, settings)),
        ("explanations", lambda: _explain_part(content, data, settings, is_twin)),
    ]
    for name, step in steps:
        started = time.perf_counter()
        if progress is not None:
            progress(name)
        _attempt(content, name, step)
        content.timings[name] = time.perf_counter() - started
    content.model_labels = {name: f"{entry.description.split(' (')[0].split(',')[0]} [{name}]"
                            for name, entry in models.REGISTRY.items()}
    content.model_labels[bench.ORACLE] = f"the twin's true linear predictor [{bench.ORACLE}]"
    content.versions = versions()
    return content


__all__ = ["ReportSettings", "build_report", "versions", "SERVED_MODEL"]
