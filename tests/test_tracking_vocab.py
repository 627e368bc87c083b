"""One MLflow store holding a benchmark, a tuning and a validation run: read back by key, they speak one
metric vocabulary, carry MLflow's standard tags, their data sets and descriptions, and the
registered version carries its evidence. Plus the champion rule on plain numbers."""

from __future__ import annotations

import re
import shlex
import shutil
import sys

import pytest
from typer.testing import CliRunner

from ml.cli import app
from ml.tracking import mlflow_io as tracking

VOCABULARY = re.compile(r"^(harrell_c|uno_c|ibs|auc_\d+|brier_\d+|calibration_slope_\d+"
                        r"|calibration_in_the_large_\d+|delta_c_vs_cox)(_ci_low|_ci_high)?$")
CORE = {"harrell_c", "uno_c", "ibs", "auc_6", "brier_12", "calibration_slope_12"}
BOOKKEEPING = {"fit_seconds", "n_resamples", "seconds", "trials_run"}


@pytest.fixture(scope="module")
def store(tmp_path_factory, _mlflow_template):
    """A tiny benchmark and a tiny tuning run (twin n = 80, 2 folds) in one MLflow store."""
    import mlflow

    root = tmp_path_factory.mktemp("vocab")
    (root / "mlruns").mkdir()
    shutil.copy(_mlflow_template, root / "mlruns" / "mlflow.db")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlruns/mlflow.db")
        runner = CliRunner()
        bench = runner.invoke(app, ["benchmark", "--n", "80", "--folds", "2", "--repeats", "1", "--n-jobs",
                                    "1", "--models", "cox,coxnet", "--out", str(root / "bench")])
        assert bench.exit_code == 0, bench.output
        tune = runner.invoke(app, ["tune", "--model", "coxnet", "--n", "80", "--trials", "2", "--outer-folds",
                                   "2", "--inner-folds", "2", "--storage", str(root / "journal.log")])
        assert tune.exit_code == 0, tune.output
        validate = runner.invoke(app, ["validate", "--n", "80", "--model", "cox", "--bootstrap", "4",
                                       "--out", str(root / "validate")])
        assert validate.exit_code == 0, validate.output
        for name in ("cohort", "analysis", "explain", "score"):  # the other commands' experiments
            with tracking.run(name, "empty"):
                pass
        client = mlflow.MlflowClient()
        yield client, {name: _runs(client, name) for name in ("benchmark", "tune", "validate")}


def _runs(client, experiment):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    return parents[0], [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def _plain(metrics):
    return {k for k in metrics if "." not in k and k not in BOOKKEEPING}


@pytest.mark.slow
def test_benchmark_and_tuning_runs_share_one_metric_vocabulary(store):
    _, runs = store
    (bench, children), (tune, _) = runs["benchmark"], runs["tune"]
    for run in (bench, *children, tune):
        assert all(VOCABULARY.match(k) for k in _plain(run.data.metrics)), sorted(run.data.metrics)
    # a CI needs two finite folds (a calibration slope can be undefined on a tiny fold)
    shared = CORE | {k + s for k in ("harrell_c", "uno_c") for s in ("_ci_low", "_ci_high")}
    assert shared <= set(bench.data.metrics) and shared <= set(tune.data.metrics)
    assert {"delta_c_vs_cox", "delta_c_vs_cox_ci_low"} <= set(bench.data.metrics)
    # the default configuration's estimates and the tuned - default gap, prefixed
    assert {"default.uno_c", "default.uno_c_ci_high", "gap.uno_c", "gap.calibration_slope_12"} <= set(
        tune.data.metrics)
    assert not any(k.startswith("outer_") for k in tune.data.metrics)


@pytest.mark.slow
def test_a_validation_run_speaks_the_same_vocabulary(store):
    """`rechallenge validate` logs its optimism-corrected figures under the benchmark's names."""
    _, runs = store
    (validation, _), (bench, _) = runs["validate"], runs["benchmark"]
    plain = _plain(validation.data.metrics) - {"epv"}
    assert all(VOCABULARY.match(k) for k in plain), sorted(validation.data.metrics)
    assert {"harrell_c", "uno_c", "calibration_slope_12"} <= plain & set(bench.data.metrics)
    assert {"apparent.harrell_c", "optimism.harrell_c"} <= set(validation.data.metrics)


@pytest.mark.slow
def test_the_benchmark_parent_carries_the_best_model_and_spans_the_work(store):
    _, runs = store
    parent, children = runs["benchmark"]
    names = {c.info.run_name for c in children}
    assert names == {f"{parent.data.params['dataset']}/{m}" for m in ("cox", "coxnet", "oracle")}
    best = next(c for c in children if c.data.tags["model"] == parent.data.tags["best_model"])
    assert parent.data.tags["best_model"] != "oracle"
    summary = {k: v for k, v in best.data.metrics.items() if not k.startswith("fold.")}
    assert {k: v for k, v in parent.data.metrics.items() if k in summary} == summary
    others = [c for c in children if c.data.tags["model"] not in ("oracle", best.data.tags["model"])]
    assert all(best.data.metrics["harrell_c"] >= c.data.metrics["harrell_c"] for c in others)
    for child in children:
        assert len(child.inputs.dataset_inputs) == 1
        assert child.inputs.dataset_inputs[0].dataset.digest == parent.inputs.dataset_inputs[0].dataset.digest
    # opened when the work was done, the parent is dated from its start: before the models' fits
    fitting = sum(c.data.metrics["fit_seconds"] * c.data.metrics["n_resamples"] for c in others + [best])
    assert parent.info.start_time <= min(c.info.start_time for c in children) - 1000 * fitting
    assert parent.info.end_time >= max(c.info.end_time for c in children)


@pytest.mark.slow
def test_runs_carry_standard_tags_and_no_parameter_twice(store):
    _, runs = store
    everything = [runs["benchmark"][0], *runs["benchmark"][1], runs["tune"][0]]
    for run in everything:
        tags = run.data.tags
        assert re.fullmatch(r"[0-9a-f]{40}|unknown", tags["mlflow.source.git.commit"])
        assert "git_commit" not in tags and {"mlflow.user", "mlflow.source.name"} <= set(tags)
        assert tags["mlflow.note.content"] == shlex.join(sys.argv)
        params = set(run.data.params)
        assert not any(p.startswith("param.") for p in params)
    cox = next(c for c in runs["benchmark"][1] if c.data.tags["model"] == "cox")
    assert {"alpha", "ties", "tol", "max_iter"} <= set(cox.data.params)
    assert len(runs["tune"][0].inputs.dataset_inputs) == 1


@pytest.mark.slow
def test_every_experiment_has_a_description(store):
    client, _ = store
    for name in ("cohort", "analysis", "benchmark", "explain", "tune", "score"):
        tags = client.get_experiment_by_name(name).tags
        assert tags["mlflow.note.content"] == tracking.EXPERIMENT_DESCRIPTIONS[name]
        assert tags["mlflow.experimentKind"] == "custom_model_development"


@pytest.mark.slow
def test_the_registered_version_carries_its_evidence(store):
    client, runs = store
    tune = runs["tune"][0]
    name = "rechallenge-pfs-coxnet"
    version = client.get_model_version(name, "1")
    tags = version.tags
    for key in ("uno_c", "uno_c_ci_low", "calibration_slope_12", "default.uno_c", "gap.uno_c"):
        assert float(tags[key]) == pytest.approx(tune.data.metrics[key])
    assert tags["n"] == "80" and 0 < int(tags["events"]) <= 80
    text = version.description
    assert "n = 80" in text and f"events = {tags['events']}" in text and "95% CI" in text
    assert "Default configuration: uno_c" in text and f"Command: {shlex.join(sys.argv)}" in text
    moved, _ = tracking.champion_rule(
        {"c": tags["uno_c"], "slope": tags["calibration_slope_12"]},
        {"c": tags["default.uno_c"], "slope": tags["default.calibration_slope_12"]},
        objective="c", calibration="slope", higher_is_better=True)
    assert (tracking.champion(name) is not None) is moved
    assert tags["champion_decision"].startswith(("moved: against the default", "kept: against the default"))


@pytest.mark.parametrize(("new", "reference", "moves"), [
    ({"c": 0.70, "s": 1.00}, {"c": 0.65, "s": 1.00}, True),    # better and calibrated
    ({"c": 0.75, "s": 0.50}, {"c": 0.65, "s": 1.00}, False),   # better in C, badly calibrated
    ({"c": 0.75, "s": 0.70}, {"c": 0.65, "s": 0.60}, True),    # out of the band but closer to 1
    ({"c": 0.617, "s": 1.0}, {"c": 0.659, "s": 1.0}, False),   # a first version losing to the default
    ({"c": 0.70, "s": "nan"}, {"c": 0.65, "s": 1.00}, False),  # no calibration figure, no move
    ({"c": 0.65, "s": 1.00}, {"c": 0.65, "s": 1.00}, False),   # a tie keeps the champion
])
def test_champion_rule_needs_discrimination_and_calibration(new, reference, moves):
    moved, reason = tracking.champion_rule(new, reference, objective="c", calibration="s",
                                           higher_is_better=True)
    assert moved is moves
    assert "c 0." in reason and "s " in reason  # the figures compared
