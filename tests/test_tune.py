"""ml.workflows.tuning: search spaces, the study machinery (storage, workers, pruning), nested CV,
the registry, and the CLI's model logger (a cohort model becomes the survival pyfunc)."""

from __future__ import annotations

import os

import numpy as np
import optuna
import pytest
from typer.testing import CliRunner

from ml import models
from ml.evaluation.loop import Scoring
from ml.workflows import tuning as tune

optuna.logging.set_verbosity(optuna.logging.WARNING)
FAMILIES = ("rsf", "gbsa", "xgb_cox", "xgb_aft", "coxnet")


@pytest.fixture(scope="module")
def data():
    from features import datasets

    return datasets.twin(n=160, seed=5)


def _space_file(tmp_path, text: str):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


# ---- search spaces --------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_shipped_search_spaces_load_and_name_real_parameters(family, data):
    space = tune.load_search_space(family)
    assert space.family == family and space.params
    tune.check_space(space, tune.make_model(family, data.spec, random_state=0))


def test_every_tunable_registry_family_has_a_search_space():
    assert set(FAMILIES) <= set(tune.available_models()) <= set(models.MODEL_NAMES)


@pytest.mark.parametrize("text, message", [
    ("family: rsf\nparams: {}\n", "empty"),
    ("family: rsf\nparams:\n  n_estimators: {type: int, lwo: 1, high: 5}\n", "lwo"),
    ("family: rsf\nparams:\n  n_estimators: {type: int, low: 9, high: 5}\n", "low"),
    ("family: rsf\nparams:\n  n_estimators: {type: float, low: 0, high: 5, log: true}\n", "log"),
    ("family: rsf\nparams:\n  max_features: {type: categorical, choices: []}\n", "choices"),
    ("family: rsf\nparams:\n  n_estimators: {type: integer, low: 1, high: 5}\n", "type"),
    ("family: rsf\nparms:\n  n_estimators: {type: int, low: 1, high: 5}\n", "parms"),
    ("family: gbsa\nparams:\n  n_estimators: {type: int, low: 1, high: 5}\n", "does not match"),
])
def test_bad_search_space_fails_at_load_with_a_clear_message(tmp_path, text, message):
    with pytest.raises(tune.TuneError, match=message):
        tune.load_search_space("rsf", path=_space_file(tmp_path, text))


def test_a_parameter_typo_fails_before_any_trial(tmp_path, data):
    space = tune.load_search_space("rsf", path=_space_file(
        tmp_path, "params:\n  n_estimator: {type: int, low: 10, high: 20}\n"))
    with pytest.raises(tune.TuneError, match="n_estimator"):
        tune.check_space(space, tune.make_model("rsf", data.spec, random_state=0))


def test_suggestions_stay_inside_the_ranges_and_fixed_values_pass_through():
    space = tune.load_search_space("xgb_aft")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(30):
        params = space.suggest(study.ask())
        for name, p in space.params.items():
            if isinstance(p, tune.CategoricalParam):
                assert params[name] in p.choices
            else:
                assert p.low <= params[name] <= p.high
        assert all(params[k] == v for k, v in space.fixed.items())


# ---- small pure pieces ----------------------------------------------------------------
@pytest.mark.parametrize("n, w", [(20, 2), (7, 3), (1, 2), (0, 1)])
def test_quotas_add_up_to_the_requested_trials(n, w):
    q = tune.quotas(n, w)
    assert sum(q) == n and len(q) == w and max(q) - min(q) <= 1


@pytest.mark.parametrize("kwargs", [dict(objective="auc"), dict(n_trials=-1), dict(outer_folds=1),
                                    dict(workers=0), dict(timeout=0)])
def test_bad_config_values_are_refused(kwargs):
    with pytest.raises(tune.TuneError):
        tune.TuneConfig(model="rsf", **kwargs)


def test_redact_hides_passwords():
    assert tune.redact("postgresql://me:secret@db:5432/optuna") == "postgresql://me:***@db:5432/optuna"
    assert tune.redact("postgresql://me:p@ss:w@db/optuna") == "postgresql://me:***@db/optuna"
    assert tune.redact("postgresql://me@db/optuna") == "postgresql://me@db/optuna"


@pytest.mark.parametrize("url, expected", [
    ("postgresql://me:pw@db:5432/optuna", "postgresql+psycopg2://me:pw@db:5432/optuna"),
    ("postgres://me:pw@db/optuna", "postgresql+psycopg2://me:pw@db/optuna"),
    ("PostgreSQL://db/optuna", "postgresql+psycopg2://db/optuna"),
    ("postgresql+psycopg2://me:pw@db/optuna", "postgresql+psycopg2://me:pw@db/optuna"),
    ("postgresql+psycopg://me:pw@db/optuna", "postgresql+psycopg://me:pw@db/optuna"),
    ("mysql+pymysql://me:pw@db/optuna", "mysql+pymysql://me:pw@db/optuna"),
    ("sqlite:///mlruns/optuna.db", "sqlite:///mlruns/optuna.db"),
    ("mlruns/optuna/journal.log", "mlruns/optuna/journal.log"),
])
def test_postgresql_urls_get_the_installed_driver(url, expected):
    assert tune.with_driver(url) == expected


@pytest.mark.parametrize("url, reason", [
    # the driver is added, so the error is about the server, not "Failed to import DB access module"
    ("postgresql://me:s3cret@127.0.0.1:1/optuna", "Connection refused"),
    ("postgres://me:s3cret@127.0.0.1:1/optuna", "Connection refused"),
    ("postgresql://me:s3cret@127.0.0.1:port/optuna", "invalid URL"),
    ("nosuchdb://me:s3cret@db/optuna", "unknown database 'nosuchdb'"),
    ("mysql://me:s3cret@db/optuna", "no database driver for 'mysql' is installed"),
])
def test_an_unusable_storage_url_is_one_line_without_the_password(url, reason):
    with pytest.raises(tune.TuneError) as caught:
        tune.open_storage(url)
    message = str(caught.value)
    assert message.startswith(f"cannot open optuna storage '{tune.redact(url)}': ")
    assert reason in message and "s3cret" not in message and "\n" not in message


def test_outer_summary_pairs_tuned_with_default_and_lists_the_objective_first():
    import pandas as pd

    rows = [{"fold": k, "variant": v, "n_train": 80, "n_test": 40, "harrell_c": c, "ibs": 0.2,
             "uno_c": c + (0.02 if v == "tuned" else 0)}
            for k, c in enumerate([0.60, 0.65, 0.70]) for v in ("tuned", "default")]
    summary = tune.summarise_outer(pd.DataFrame(rows))
    gap = summary.query("metric == 'uno_c' and variant == 'tuned - default'").iloc[0]
    assert gap["mean"] == pytest.approx(0.02) and gap["ci_low"] == pytest.approx(0.02)  # paired: no noise
    table = tune.summary_table(summary, "ibs")
    assert list(table["metric"][:3]) == ["ibs"] * 3
    assert list(table["variant"][:3]) == ["tuned", "default", "tuned - default"]
    assert table.loc[0, "95% CI"] == "0.200 to 0.200"


# ---- objective and pruning ------------------------------------------------------------
def _objective(data, model="coxnet", folds=3):
    X, y = data.X.reset_index(drop=True), data.y
    base = tune.make_model(model, data.spec, random_state=0)
    return tune.InnerCVObjective(X, y, base, tune.load_search_space(model),
                                 tune.cv_folds(y, folds, random_state=0), "uno_c", Scoring.of(data))


def test_a_hopeless_configuration_is_pruned_after_the_first_inner_fold(data):
    study = optuna.create_study(direction="maximize", pruner=tune.make_pruner(startup_trials=3))
    for _ in range(3):
        study.enqueue_trial({"alpha": 0.001, "l1_ratio": 0.5})
    study.enqueue_trial({"alpha": 1.0, "l1_ratio": 1.0})  # every coefficient shrunk to 0: C = 0.5
    study.optimize(_objective(data), n_trials=4)
    good, bad = study.trials[0], study.trials[3]
    assert good.state.name == "COMPLETE" and len(good.intermediate_values) == 3
    assert good.value > 0.6
    assert bad.state.name == "PRUNED" and list(bad.intermediate_values) == [0]
    assert bad.intermediate_values[0] == pytest.approx(0.5, abs=0.02)


def test_reported_values_are_running_means_of_the_fold_scores(data):
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    study.optimize(_objective(data), n_trials=1)
    t = study.trials[0]
    scores = t.user_attrs["fold_scores"]
    assert [t.intermediate_values[k] for k in range(3)] == pytest.approx(
        [np.mean(scores[: k + 1]) for k in range(3)])
    assert t.value == pytest.approx(np.mean(scores))


# ---- storage and workers --------------------------------------------------------------
def _job(data, storage, name, n_trials, worker, invocation="test"):
    cfg = tune.TuneConfig(model="coxnet", n_trials=n_trials, inner_folds=2, seed=3, storage=storage)
    task = tune.StudyTask(name, np.arange(len(data.y)), 0)
    return tune.WorkerJob(data.X.reset_index(drop=True), data.y, data.spec, Scoring.of(data), cfg,
                          tune.load_search_space("coxnet"), (task,), storage, n_trials, worker,
                          invocation, None)


@pytest.mark.slow
def test_two_worker_processes_share_one_study_without_lost_or_duplicated_trials(tmp_path, data):
    storage = str(tmp_path / "journal.log")
    tune.create_studies(tune.open_storage(storage), ["shared"], "maximize", "fp")
    jobs = [_job(data, storage, "shared", q, w) for w, q in enumerate(tune.quotas(7, 2))]
    tune.run_workers(jobs)  # two spawned processes, each with its own storage connection
    trials = optuna.load_study(study_name="shared", storage=tune.open_storage(storage)).trials
    assert len(trials) == 7
    assert sorted(t.number for t in trials) == list(range(7))
    assert len({t._trial_id for t in trials}) == 7
    pids = {t.user_attrs["pid"] for t in trials}
    assert len(pids) == 2 and os.getpid() not in pids
    assert sorted(t.user_attrs["worker"] for t in trials) == [0, 0, 0, 0, 1, 1, 1]
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)


def test_a_seeded_study_is_reproducible(tmp_path, data):
    runs = []
    for k in range(2):
        storage = str(tmp_path / f"j{k}.log")
        tune.create_studies(tune.open_storage(storage), ["s"], "maximize", "fp")
        tune.work(_job(data, storage, "s", 4, 0))
        study = optuna.load_study(study_name="s", storage=tune.open_storage(storage))
        runs.append([(t.params, t.value) for t in study.trials])
    assert runs[0] == runs[1]


def test_sqlite_url_storage_works_and_bad_storage_is_one_clear_error(tmp_path):
    storage = tune.open_storage(f"sqlite:///{tmp_path}/optuna.db")
    tune.create_studies(storage, ["a"], "maximize", "fp")
    assert optuna.load_study(study_name="a", storage=storage).user_attrs["fingerprint"] == "fp"
    with pytest.raises(tune.TuneError, match="cannot open optuna storage 'sqlite:////nonexistent"):
        tune.open_storage("sqlite:////nonexistent/dir/x.db")


def test_a_study_of_other_data_or_direction_is_refused(tmp_path):
    storage = tune.open_storage(str(tmp_path / "j.log"))
    tune.create_studies(storage, ["s"], "maximize", "fp1")
    with pytest.raises(tune.TuneError, match="other data"):
        tune.create_studies(storage, ["s"], "maximize", "fp2")
    with pytest.raises(tune.TuneError, match="direction"):
        tune.create_studies(storage, ["s"], "minimize", "fp1")


# ---- nested CV + MLflow ---------------------------------------------------------------
@pytest.mark.slow
def test_nested_cv_has_one_study_per_outer_fold_plus_the_final_one(tmp_path, data):
    cfg = tune.TuneConfig(model="coxnet", n_trials=2, outer_folds=2, inner_folds=2, seed=1,
                          storage=str(tmp_path / "j.log"), pruner_startup_trials=1)
    result = tune.tune(data, cfg)
    assert result.studies == [f"{result.study}-outer0", f"{result.study}-outer1", result.study]
    assert result.trials.groupby("study").size().to_dict() == {s: 2 for s in result.studies}
    assert sorted(result.outer["variant"]) == ["default", "default", "tuned", "tuned"]
    assert result.outer[list(tune.OBJECTIVES)].notna().all().all()
    assert (result.outer["n_train"] + result.outer["n_test"] == len(data.y)).all()
    best = result.trials[result.trials["study"] == result.study].sort_values("value").iloc[-1]
    assert result.best_params == best["params"]
    assert result.final_model.named_steps["model"].alpha == best["params"]["alpha"]
    diff = result.summary.query("metric == 'uno_c'").set_index("variant")["mean"]
    assert diff["tuned - default"] == pytest.approx(diff["tuned"] - diff["default"])
    # the same command again adds trials to the same studies (load_if_exists)
    again = tune.tune(data, cfg)
    assert again.study == result.study
    assert again.trials.groupby("study").size().to_dict() == {s: 4 for s in result.studies}


def _evidence(c, slope, default_c=0.60, default_slope=1.0, key="uno_c"):
    return {key: c, "calibration_slope_12": slope, f"default.{key}": default_c,
            "default.calibration_slope_12": default_slope}


@pytest.mark.slow
def test_champion_moves_only_by_the_rule_of_discrimination_and_calibration(mlflow_store):
    from sklearn.dummy import DummyRegressor

    from ml.tracking import mlflow_io as tracking

    with tracking.run("tune", "models"):
        uri = tracking.log_model(DummyRegressor().fit([[0.0], [1.0]], [0.0, 1.0]))
    name = "rechallenge-pfs-test"
    rule = dict(objective="uno_c", calibration="calibration_slope_12", higher_is_better=True)
    steps = [(_evidence(0.58, 1.0), False, None),        # first version, worse than the default
             (_evidence(0.70, 1.0), True, "2"),          # first to beat the default
             (_evidence(0.69, 1.0), False, "2"),         # worse
             (_evidence(0.70, 1.0), False, "2"),         # a tie keeps the champion
             (_evidence(0.75, 0.5), False, "2"),         # better C, badly calibrated
             (_evidence(0.72, 1.1), True, "6")]          # better and calibrated
    for tags, moved, champion in steps:
        version = tracking.register_model(uri, name, tags)
        assert tracking.promote_by_rule(name, version, **rule).moved is moved
        assert (tracking.champion(name) or {}).get("version") == champion
    # benchmark --tuned reads the champion's best params from its version tag
    best = '{"alpha": 0.2, "l1_ratio": 0.4}'
    tags = {**_evidence(0.7, 1.0), "best_params": best}
    tagged = tracking.register_model(uri, "rechallenge-pfs-coxnet", tags)
    tracking.promote_by_rule("rechallenge-pfs-coxnet", tagged, **rule)
    found, missing = tune.champion_params("pfs", ["cox", "coxnet", "rsf"])
    assert found == {"coxnet": {"alpha": 0.2, "l1_ratio": 0.4}} and missing == ["rsf"]
    ibs = "rechallenge-pfs-ibs"
    for value, moved in ((0.20, True), (0.21, False), (0.15, True)):
        version = tracking.register_model(uri, ibs, _evidence(value, 1.0, default_c=0.25, key="ibs"))
        assert tracking.promote_by_rule(ibs, version, objective="ibs", calibration="calibration_slope_12",
                                        higher_is_better=False).moved is moved


@pytest.mark.slow
def test_run_and_log_nests_every_trial_and_registers_the_refitted_model(mlflow_store, data):
    import mlflow

    from ml.tracking import mlflow_io as tracking

    cfg = tune.TuneConfig(model="coxnet", n_trials=3, outer_folds=2, inner_folds=2, seed=1,
                          storage=str(mlflow_store / "j.log"), pruner_startup_trials=2)
    from ml.cli.tune import survival_model_logger

    result, reg = tune.run_and_log(data, cfg, registered_name="rechallenge-pfs-coxnet",
                                   log_model=survival_model_logger("coxnet", cfg.seed))
    assert reg.version == "1" and reg.previous_champion is None
    outer = result.summary.set_index(["metric", "variant"])["mean"]
    assert reg.promoted == tracking.champion_rule(
        {"uno_c": outer[("uno_c", "tuned")], "slope": outer[("calibration_slope_12", "tuned")]},
        {"uno_c": outer[("uno_c", "default")], "slope": outer[("calibration_slope_12", "default")]},
        objective="uno_c", calibration="slope", higher_is_better=True)[0]
    client = mlflow.MlflowClient()
    children = client.search_runs(
        [client.get_run(reg.run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{reg.run_id}'")
    assert len(children) == 9
    assert {c.data.tags["study"] for c in children} == set(result.studies)
    assert all("alpha" in c.data.params for c in children)
    version = client.get_model_version("rechallenge-pfs-coxnet", "1")
    assert float(version.tags["uno_c"]) == pytest.approx(outer[("uno_c", "tuned")])
    # a cohort model is registered as the survival pyfunc: same risk as the refitted model,
    # and its risk groups come from cut-offs fixed on the training rows
    loaded = tracking.load_survival_model("models:/rechallenge-pfs-coxnet/1")
    assert np.allclose(loaded.predict(data.X), result.final_model.predict(data.X))
    scored = mlflow.pyfunc.load_model("models:/rechallenge-pfs-coxnet/1").predict(data.X.head(30))
    assert set(scored["risk_group"]) <= {"low", "intermediate", "high"}


@pytest.mark.slow
def test_a_model_of_another_table_is_logged_in_the_sklearn_flavour(mlflow_store):
    import mlflow

    from features import datasets
    from ml.cli.tune import survival_model_logger
    from ml.tracking import mlflow_io as tracking

    veterans = datasets.public("veterans")
    fitted = models.fit_full("cox", veterans.spec, veterans.X, veterans.y)
    with tracking.run("tune", "models"):
        uri = survival_model_logger("cox", 0)(fitted, veterans)
    assert np.allclose(mlflow.sklearn.load_model(uri).predict(veterans.X), fitted.predict(veterans.X))


# ---- CLI bad input --------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--model", "nope"], "unknown model 'nope'"),
    (["--model", "rsf", "--storage", "sqlite:////nonexistent/dir/x.db"], "cannot open optuna storage"),
    (["--model", "rsf", "--storage", "postgresql://me:pw@127.0.0.1:1/db"], "me:***@"),
    (["--model", "rsf", "--objective", "auc"], "unknown objective"),
    (["--model", "rsf", "--space", "EMPTY"], "search space is empty"),
])
def test_cli_bad_input_is_one_clear_line_and_exit_2(mlflow_store, args, message):
    from ml.cli import app

    empty = mlflow_store / "empty.yaml"
    empty.write_text("family: rsf\nparams: {}\n")
    args = [str(empty) if a == "EMPTY" else a for a in args]
    result = CliRunner().invoke(app, ["tune", *args])
    assert result.exit_code == 2
    out = result.output.strip()
    assert message in out and len(out.splitlines()) == 1 and "Traceback" not in out
    assert "pw@" not in out


def test_benchmark_rows_of_tuned_models_use_the_champion_params():
    from ml.workflows import benchmark

    cfg = benchmark.BenchmarkConfig(models=["cox", "rsf"], model_params={"rsf": {"n_estimators": 50}},
                                    tuned_params={"rsf": {"n_estimators": 300, "max_depth": 5}})
    assert benchmark.model_spec("rsf", cfg) == ("rsf", {"n_estimators": 50})
    assert benchmark.model_spec("rsf_tuned", cfg) == ("rsf", {"n_estimators": 300, "max_depth": 5})
    assert benchmark.model_spec("cox", cfg) == ("cox", {})
