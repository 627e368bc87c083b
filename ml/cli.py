"""The `rechallenge` command. Thin: parse arguments, call the library, print the result.

Every command exits 0 on success and 2 on bad input (with one clear message).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from ml import display

app = typer.Typer(
    name="rechallenge",
    help="Progression-free survival after immunotherapy rechallenge in advanced NSCLC: "
    "twin cohorts, IPTW analysis, survival model benchmarks, SHAP and MLflow tracking.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # help texts are plain: "[default: ...]" must print as written
)
cohort_app = typer.Typer(help="Draw, describe and validate cohort tables.", no_args_is_help=True,
                         rich_markup_mode=None)
app.add_typer(cohort_app, name="cohort")

console = Console()
err_console = Console(stderr=True)
BAD_INPUT = 2

# Options naming any survival table, shared by the commands that take one.
DataOpt = Annotated[Path | None, typer.Option(
    "--data", help="Any survival table (.csv/.parquet) instead; needs --time and --event.")]
TimeOpt = Annotated[str | None, typer.Option("--time", help="Time column of --data.")]
EventOpt = Annotated[str | None, typer.Option("--event", help="Event column of --data (0/1).")]
TreatmentOpt = Annotated[str | None, typer.Option(
    "--treatment", help="Treatment column of --data (enables iptw_cox).")]
TreatedOpt = Annotated[str | None, typer.Option(
    "--treated", help="Value of --treatment marking the treated group.")]
DropOpt = Annotated[str | None, typer.Option(
    "--drop", help="Comma-separated columns of --data that are not features.")]


def fail(message: str, code: int = BAD_INPUT) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    raise typer.Exit(code)


def _load(path: Path, mapping: Path | None):
    """Read + map + validate a cohort file, turning bad input into a clean exit 2."""
    from features import io
    from features.schema import CohortValidationError

    try:
        return io.load_cohort(path, mapping)
    except CohortValidationError as exc:
        fail(str(exc))
    except (FileNotFoundError, io.MappingError, ValueError) as exc:
        fail(str(exc))


@cohort_app.command("generate")
def cohort_generate(
    out: Path = typer.Option(..., "--out", help="Cohort file to write (.csv or .parquet)."),
    n: int = typer.Option(None, "--n", min=1, help="Number of patients [default: the config's "
                          "default_n, 101 like the study]."),
    seed: int = typer.Option(None, "--seed", min=0, help="Random seed [default: the config's "
                             "named default seed, the n=101 draw closest to the published table]."),
    config: Path = typer.Option(None, "--config", exists=True, dir_okay=False,
                                help="Twin cohort YAML [default: experiments/cohorts/default.yaml]."),
    truth: Path = typer.Option(None, "--truth", help="Also write the ground truth per patient: "
                               "true linear predictor, propensity, potential PFS/OS under CIA and CI."),
) -> None:
    """Draw a digital-twin cohort (with known ground truth) like the study's."""
    from features import io, twin

    for target in (out, truth):
        if target is not None and target.suffix.lower() not in (".csv", ".parquet", ".pq"):
            fail(f"{target}: output must end in .csv or .parquet")
    try:
        cfg = twin.load_config(config)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    cohort = twin.generate(n=n, seed=seed, config=cfg)
    io.write_table(cohort.data, out)
    written = [str(out)]
    if truth is not None:
        try:
            io.write_table(cohort.truth, truth)
        except Exception:
            out.unlink(missing_ok=True)  # leave nothing half-written behind
            raise
        written.append(str(truth))
    n_cia = int((cohort.data["treatment"] == "CIA").sum())
    console.print(
        f"[green]wrote[/] {', '.join(written)}: {len(cohort.data)} patients "
        f"(CIA {n_cia}, CI {len(cohort.data) - n_cia}), seed {cohort.seed}, "
        f"config version {cfg.version}"
    )


@cohort_app.command("describe")
def cohort_describe(
    file: Path = typer.Argument(..., help="Cohort table (.csv or .parquet)."),
    mapping: Path = typer.Option(None, "--mapping", help="Column-mapping YAML for a user table."),
    mlflow: bool = typer.Option(False, "--mlflow/--no-mlflow",
                                help="Also log the summary to MLflow (experiment 'cohort')."),
) -> None:
    """Print Table 1 by treatment group (n/%, median [IQR], SMD) and KM medians of PFS and OS."""
    from ml import causal

    df = _load(file, mapping)
    table = causal.table_one(df)
    medians = causal.km_medians_by_group(df)
    display.print_table_one(console, table, title=f"Table 1: {file.name} ({len(df)} patients)")
    display.print_medians(console, medians)
    if mlflow:
        from ml import tracking

        with tracking.run("cohort", f"describe {file.name}") as active:
            tracking.log_dataset(df, name=file.stem, source=str(file))
            tracking.log_params({"file": str(file), "n": len(df)})
            tracking.log_metrics(display.median_metrics(medians))
            tracking.log_table(table, "table_one.csv")
            tracking.log_table(medians, "km_medians.csv")
        console.print(f"logged to MLflow run {active.info.run_id} (experiment 'cohort')")


@cohort_app.command("validate")
def cohort_validate(
    file: Path = typer.Argument(..., help="A user's cohort table (.csv or .parquet)."),
    mapping: Path = typer.Option(None, "--mapping", help="Column-mapping YAML: your column names, "
                                 "labels and time unit to ours (see README)."),
) -> None:
    """Check a table against the cohort contract and report every problem (exit 2 if any)."""
    df = _load(file, mapping)
    n_cia = int((df["treatment"] == "CIA").sum())
    missing = df.isna().sum()
    missing = missing[missing > 0]
    note = (", missing covariates (imputed later): " +
            ", ".join(f"{c} {k}" for c, k in missing.items())) if len(missing) else ""
    console.print(f"[green]valid[/]: {len(df)} patients (CIA {n_cia}, CI {len(df) - n_cia}){note}")


@app.command("analyze")
def analyze(
    data: Path = typer.Option(None, "--data", help="Cohort table (.csv or .parquet); without it, "
                              "the default twin cohort."),
    mapping: Path = typer.Option(None, "--mapping", help="Column-mapping YAML for a user table."),
    experiment: Path = typer.Option(None, "--experiment", help="Analysis YAML; without it, "
                                    "experiments/paper.yaml."),
    out: Path = typer.Option(Path("out/analysis"), "--out", help="Directory for analysis.json, "
                             "weights.csv and the figures."),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log to MLflow (experiment 'analysis')."),
) -> None:
    """The study's analysis: IPTW balance, KM medians and log-rank, Cox tables, side by side."""
    import matplotlib.pyplot as plt

    from features import io, twin
    from ml import analysis, causal, plots

    try:
        config = analysis.load_config(experiment)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    df = twin.generate().data if data is None else _load(data, mapping)
    name = "twin-default" if data is None else data.stem
    try:
        result = analysis.run_analysis(df, config)
    except causal.CausalInputError as exc:
        fail(str(exc))
    display.print_analysis(console, result)
    out.mkdir(parents=True, exist_ok=True)
    (out / "analysis.json").write_text(analysis.to_json(result))
    weights = result.weights_frame(df["id"])
    io.write_table(weights, out / "weights.csv")
    figures = plots.analysis_figures(result, df)
    for file_name, fig in figures.items():
        fig.savefig(out / file_name, dpi=150)
    console.print(f"[green]wrote[/] {out}/analysis.json, weights.csv, {', '.join(figures)}")
    if mlflow:
        from ml import tracking

        with tracking.run("analysis", f"analyze {name}", seed=config.seed) as active:
            tracking.log_dataset(df, name=name, source=str(data or "features.twin.generate()"))
            tracking.log_params(analysis.mlflow_params(config))
            tracking.log_metrics(analysis.key_metrics(result))
            tracking.log_json(analysis.to_dict(result), "analysis.json")
            tracking.log_table(weights, "weights.csv")
            tracking.log_table(result.side_by_side, "side_by_side.csv")
            for file_name in figures:
                tracking.log_artifact(out / file_name)  # the PNGs already written: no re-render
        console.print(f"logged to MLflow run {active.info.run_id} (experiment 'analysis')")
    plt.close("all")


@app.command("tune")
def tune_command(
    model: str = typer.Option(..., "--model", help="Model family with a search space in "
                              "experiments/search_spaces/ (rsf, gbsa, xgb_cox, xgb_aft, coxnet)."),
    dataset: str = typer.Option("twin", "--dataset", help="twin, veterans, gbsg2, whas500, aids, flchain "
                                "(ignored with --data)."),
    data: Path = typer.Option(None, "--data", help="A cohort table (.csv/.parquet) instead of a data set."),
    mapping: Path = typer.Option(None, "--mapping", help="Column-mapping YAML for --data."),
    endpoint: str = typer.Option("pfs", "--endpoint", help="pfs or os (twin and cohort tables)."),
    n: int = typer.Option(None, "--n", min=20, help="Twin size [default 101, like the study]."),
    trials: int = typer.Option(20, "--trials", min=0, help="Trials this command adds to each study "
                               "(outer folds and final), split over --workers."),
    timeout: float = typer.Option(None, "--timeout", min=1, help="Wall-clock budget in seconds for all "
                                  "studies of this command."),
    objective: str = typer.Option("uno_c", "--objective", help="uno_c, harrell_c or ibs."),
    outer: int = typer.Option(3, "--outer-folds", min=2, help="Outer CV folds (honest estimate)."),
    inner: int = typer.Option(3, "--inner-folds", min=2, help="Inner CV folds (the search)."),
    storage: str = typer.Option(None, "--storage", help="Optuna storage: an RDB URL (postgresql://..., "
                                "sqlite:///...) or a journal file [default: mlruns/optuna/journal.log]."),
    study: str = typer.Option(None, "--study", help="Study name [default: <data>-<model>-<objective>-"
                              "<fingerprint of data and settings>]."),
    space: Path = typer.Option(None, "--space", help="Search-space YAML [default: "
                               "experiments/search_spaces/<model>.yaml]."),
    workers: int = typer.Option(1, "--workers", min=1, help="Local worker processes on the study."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of folds, samplers and models."),
) -> None:
    """Tune a model family with nested CV (optuna), log trials to MLflow, register the best model."""
    import optuna

    from features import datasets, schema
    from ml import tune

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        config = tune.TuneConfig(model=model, objective=objective, n_trials=trials, timeout=timeout,
                                 outer_folds=outer, inner_folds=inner, workers=workers, seed=seed,
                                 storage=storage, study=study, space_path=space and str(space))
        if data is not None:
            if endpoint not in schema.ENDPOINTS:
                fail(f"unknown endpoint '{endpoint}'; choose from {', '.join(schema.ENDPOINTS)}")
            surv, label = tune.cohort_data(_load(data, mapping), endpoint, data.stem, str(data)), endpoint
        elif dataset == "twin":
            surv, label = datasets.twin(n=n, endpoint=endpoint), endpoint
        else:
            surv, label = datasets.public(dataset), dataset
        result, reg = tune.run_and_log(surv, config, registered_name=tune.registered_model_name(label, model))
    except (tune.TuneError, datasets.DatasetError) as exc:
        fail(str(exc))
    display.print_frame(console, tune.summary_table(result), digits=3,
                        title=f"{model} on {surv.name}: outer {outer}-fold estimates, tuned vs default "
                        f"({trials} trials x {inner} inner folds per study)")
    console.print(f"best configuration (refitted on all rows): {result.best_params}")
    moved = "moved to this version" if reg.promoted else (
        f"stays on version {reg.previous_champion['version']}" if reg.previous_champion else "unset")
    console.print(f"registered [bold]{reg.name}[/] version {reg.version}; alias champion {moved}. "
                  f"Study '{result.study}', MLflow run {reg.run_id} (experiment 'tune'), "
                  f"{result.seconds:.0f} s")


@app.command("benchmark")
def benchmark(
    dataset: str = typer.Option(None, "--dataset", help="twin | veterans | gbsg2 | whas500 | aids | flchain "
                                "[default: the experiment's, twin]."),
    data: DataOpt = None,
    time: TimeOpt = None,
    event: EventOpt = None,
    treatment: TreatmentOpt = None,
    treated: TreatedOpt = None,
    drop: DropOpt = None,
    endpoint: str = typer.Option(None, "--endpoint", help="Twin endpoint: pfs | os."),
    models: str = typer.Option(None, "--models", help="Comma-separated models [default: all]: cox, "
                               "iptw_cox, coxnet, rsf, gbsa, xgb_cox, xgb_aft."),
    repeats: int = typer.Option(None, "--repeats", min=1, help="CV repeats [default 5]."),
    folds: int = typer.Option(None, "--folds", min=2, help="CV folds [default 5]."),
    seed: int = typer.Option(None, "--seed", min=0, help="Seed of folds and models."),
    n: int = typer.Option(None, "--n", min=10, help="Twin size [default: 101, like the study]."),
    n_jobs: int = typer.Option(None, "--n-jobs", min=1, help="Processes for the folds [default 2]."),
    experiment: Path = typer.Option(None, "--experiment", help="Benchmark YAML [default: "
                                    "experiments/benchmark.yaml]."),
    out: Path = typer.Option(Path("out/benchmark"), "--out", help="Directory for leaderboard.csv, "
                             "benchmark.json, fold_scores.csv and the figures."),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log to MLflow (experiment 'benchmark')."),
    tuned: bool = typer.Option(False, "--tuned", help="Also a '<model>_tuned' row per model with a "
                               "registered champion (rechallenge tune), refitted with its best params."),
) -> None:
    """Every model family on the same repeated CV folds: leaderboard with CIs and the difference to Cox."""
    import json

    import matplotlib.pyplot as plt
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ml import benchmark as bench
    from ml import benchmark_plots

    split = (lambda text: [v.strip() for v in text.split(",") if v.strip()])  # noqa: E731
    try:
        config = bench.load_config(
            experiment, dataset=dataset, data=data, time=time, event=event, treatment=treatment,
            treated=treated, drop=split(drop) if drop else None, endpoint=endpoint,
            models=split(models) if models else None, repeats=repeats, folds=folds, seed=seed, n=n,
            n_jobs=n_jobs)
        prepared = bench.prepare_data(config)
    except bench.BenchmarkError as exc:
        fail(str(exc))
    if tuned:  # champions of `rechallenge tune` on the same data: rechallenge-<endpoint|dataset>-<model>
        from ml import tune

        if config.data is not None:
            fail("--tuned needs --dataset (tuned models are registered per endpoint or data set)")
        found, missing = tune.champion_params(config.endpoint if config.dataset == "twin" else config.dataset,
                                              config.models)
        config = config.model_copy(update={"tuned_params": found})
        if missing:
            err_console.print(f"no tuned champion for {', '.join(missing)} (rechallenge tune --model ...)")
        if found:
            err_console.print("note: '_tuned' rows reuse hyperparameters searched on all rows of this data, "
                              "so they are optimistic here; the honest figure is the tune run's outer CV")
    total = (len(config.models) + len(config.tuned_params)) * config.folds * config.repeats
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err_console, transient=True) as bar:
            task = bar.add_task("models x folds", total=total)
            result = bench.run_benchmark(
                prepared, config, progress=lambda name, done: bar.update(task, completed=done,
                                                                          description=f"{name:>9}"))
    except bench.BenchmarkError as exc:
        fail(str(exc))
    display.print_benchmark(console, result)
    out.mkdir(parents=True, exist_ok=True)
    result.leaderboard.to_csv(out / "leaderboard.csv", index=False)
    result.scores.to_csv(out / "fold_scores.csv", index=False)
    (out / "benchmark.json").write_text(json.dumps(bench.to_json(result), indent=2))
    figures = benchmark_plots.benchmark_figures(result)
    for file_name, fig in figures.items():
        fig.savefig(out / file_name, dpi=150)
    console.print(f"[green]wrote[/] {out}/leaderboard.csv, benchmark.json, fold_scores.csv, "
                  f"{', '.join(figures)} ({result.seconds:.1f} s)")
    if mlflow:
        run_id = bench.log_to_mlflow(result, prepared, figures)
        console.print(f"logged to MLflow run {run_id} (experiment 'benchmark', one nested run per model)")
    plt.close("all")


@app.command("explain")
def explain_command(
    dataset: str = typer.Option("twin", "--dataset",
                                help="twin | veterans | gbsg2 | whas500 | aids | flchain."),
    data: DataOpt = None,
    time: TimeOpt = None,
    event: EventOpt = None,
    treatment: TreatmentOpt = None,
    treated: TreatedOpt = None,
    drop: DropOpt = None,
    models: str = typer.Option(None, "--models", help="Comma-separated models [default: all that apply]: "
                               "cox, iptw_cox, coxnet, rsf, gbsa, xgb_cox, xgb_aft."),
    horizon: float = typer.Option(12.0, "--horizon", min=0.0, help="Also explain S(horizon) (months on "
                                  "the twin); 0 = risk only."),
    seeds: int = typer.Option(0, "--seeds", min=0, help="Twin only: also repeat the signal check on K "
                              "fresh draws and report the recovery rate per model."),
    n: int = typer.Option(None, "--n", min=10, help="Twin size [default: the config's, 101]."),
    seed: int = typer.Option(None, "--seed", min=0, help="Twin draw [default: the config's named seed]; "
                             "the --seeds draws use seed+1 .. seed+K. Also seeds the models."),
    patient: str = typer.Option(None, "--patient", help="Patient id (twin, e.g. P001) or row number: "
                                "also draw a waterfall of this patient for each model."),
    config: Path = typer.Option(None, "--config", exists=True, dir_okay=False, help="Twin cohort YAML "
                                "[default: experiments/cohorts/default.yaml]; its true log HRs are the "
                                "signal check's answer key."),
    out: Path = typer.Option(Path("out/explain"), "--out", help="Directory for shap_summary.json and PNGs."),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="Log to MLflow (experiment 'explain')."),
) -> None:
    """SHAP per model (one-hot summed back per feature): beeswarm, bar, waterfall, and on the twin
    whether smoking and prior response are recovered with the true direction."""
    import json

    import matplotlib.pyplot as plt

    from features import twin
    from features.datasets import DATASETS
    from ml import explain as ex
    from ml import explain_plots
    from ml import models as zoo

    if data is None and dataset not in DATASETS:
        fail(f"unknown data set '{dataset}'; choose from {', '.join(DATASETS)}")
    is_twin = data is None and dataset == "twin"
    try:
        cfg = twin.load_config(config) if is_twin else None
        if is_twin:
            prepared = ex.twin_data(n=n, seed=seed, config=cfg)
        else:
            from ml import benchmark as bench

            split = [v.strip() for v in drop.split(",")] if drop else None
            prepared = bench.prepare_data(bench.load_config(
                None, dataset=dataset, data=data, time=time, event=event, treatment=treatment,
                treated=treated, drop=split))
    except Exception as exc:  # bad config / data: one clean message
        fail(str(exc))
    names = [m.strip() for m in models.split(",")] if models else [
        m for m in zoo.MODEL_NAMES if prepared.treatment is not None or not zoo.REGISTRY[m].needs_treatment]
    for name in names:
        if name not in zoo.REGISTRY:
            fail(f"unknown model '{name}'; choose from {', '.join(zoo.MODEL_NAMES)}")
    if patient is not None and patient not in prepared.frame.index.astype(str):
        fail(f"no patient '{patient}' in {prepared.name}")
    with console.status(f"fitting and explaining {', '.join(names)} on {prepared.name}"):
        explained = ex.fit_and_explain(prepared, names, horizon=horizon or None, random_state=seed)
    truth = twin.true_log_hazard_ratios(cfg) if is_twin else None
    checks = ex.check_signals(explained, truth, noise=twin.NOISE_FEATURES) if is_twin else None
    recovery = None
    if is_twin and seeds:
        first = (cfg.default_seed if seed is None else seed) + 1
        with console.status(f"signal check on {seeds} fresh twin draws"):
            _, recovery = ex.recovery_over_seeds(names, range(first, first + seeds), n=n, config=cfg,
                                                 random_state=seed)
    doc = ex.summary_document(explained, checks, recovery, dataset=prepared.name, n=len(prepared.frame),
                              horizon=horizon or None, truth=truth, config=str(config or "default"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "shap_summary.json").write_text(json.dumps(doc, indent=2, default=str))
    figures = {}
    for e in explained:
        for kind, draw in (("beeswarm", explain_plots.plot_beeswarm), ("bar", explain_plots.plot_bar)):
            fig, ax = plt.subplots(figsize=(8, 6))
            draw(e.risk, ax=ax, model=e.model, spec=prepared.spec)
            figures[f"{e.model}_{kind}.png"] = fig
        if patient is not None:
            label = prepared.frame.index[prepared.frame.index.astype(str) == patient][0]
            figures[f"{e.model}_waterfall_{patient}.png"] = explain_plots.plot_waterfall(
                e.risk, label, model=e.model, spec=prepared.spec)
    for file_name, fig in figures.items():
        fig.savefig(out / file_name, dpi=120, bbox_inches="tight")
        plt.close(fig)
    table = ex.summary_frame(explained).pivot(index="feature", columns="model", values="rank")
    display.print_frame(console, table.reset_index()[["feature", *names]].sort_values(names[0]),
                        title=f"SHAP rank of each feature (risk, 1 = most important): {prepared.name}")
    if checks is not None:
        display.print_frame(console, ex.signal_frame(checks), title="Signal check vs the cohort config's "
                            "true log HRs (pass = top 3 of non-treatment features, true direction)")
    if recovery is not None:
        display.print_frame(console, recovery, title=f"Recovery over {seeds} fresh twin draws")
    console.print(f"[green]wrote[/] {out}/shap_summary.json and {len(figures)} figures")
    if mlflow:
        from ml import tracking

        with tracking.run("explain", f"explain {prepared.name}", seed=seed) as active:
            tracking.log_params({"dataset": prepared.name, "models": ",".join(names), "horizon": horizon,
                                 "seeds": seeds, "config": str(config or "default")})
            tracking.log_json(doc, "shap_summary.json")
            metrics = {f"signal_pass_{c.model}": float(c.passed) for c in checks or []}
            if recovery is not None:
                metrics.update({f"recovery_rate_{r.model}": r.recovery_rate for r in recovery.itertuples()})
            tracking.log_metrics(metrics)
            for file_name in figures:
                tracking.log_artifact(out / file_name)
        console.print(f"logged to MLflow run {active.info.run_id} (experiment 'explain')")
    plt.close("all")


MAX_ROWS_PRINTED = 20


@app.command("score")
def score_command(
    patient: Path = typer.Option(None, "--patient", help="One patient (a JSON object; a list for several)."),
    data: Path = typer.Option(None, "--data", help="Several patients (.csv or .parquet, contract columns)."),
    model: str = typer.Option(None, "--model", help="Model URI or path [default: models:/rechallenge-pfs-cox"
                              "@champion; fitted on the twin and registered if the registry has none]."),
    out: Path = typer.Option(None, "--out", help="Write the results: .json (records) or .csv (table)."),
    plot: Path = typer.Option(None, "--plot", help="Survival-curve PNG for one patient [default: beside "
                              "--out, else out/score/<id>_pfs.png]."),
) -> None:
    """Score patients: risk score and group, P(PFS > 3/6/12/24 months), median PFS, top features."""
    import json

    import pandas as pd

    from ml import score

    if (patient is None) == (data is None):
        fail("give exactly one of --patient FILE.json or --data FILE.csv")
    if out is not None and out.suffix.lower() not in (".json", ".csv"):
        fail(f"{out}: --out must end in .json or .csv")
    source = patient or data
    try:
        if patient is not None:
            records = json.loads(patient.read_text(encoding="utf-8"))
        else:
            from features import io

            records = io.read_table(data)
        frame = score.parse_patients(records)
    except score.ScoringInputError as exc:
        fail(f"{source}: {exc}")
    except json.JSONDecodeError as exc:
        fail(f"{source}: not valid JSON ({exc})")
    except (OSError, ValueError) as exc:
        fail(f"{source}: {exc}")
    try:
        scorer, uri, notes = score.resolve_scorer(model)
    except ValueError as exc:
        fail(str(exc))
    single = len(frame) == 1
    result = scorer.result_for(frame, curve=single)
    table = score.to_frame(result)
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    title = f"PFS scoring with {uri} ({scorer.info()['model']}, risk groups: training tertiles)"
    if single:
        values = [f"{v:.3g}" if isinstance(v, float) else str(v) for v in table.iloc[0]]
        shown = pd.DataFrame({"": table.columns, str(table["id"].iloc[0]): values})
        display.print_frame(console, shown, title=title)
    else:
        shown = table.drop(columns=["top_up", "top_down"]).head(MAX_ROWS_PRINTED)
        display.print_frame(console, shown, title=title, digits=3)
        if len(table) > MAX_ROWS_PRINTED:
            console.print(f"(first {MAX_ROWS_PRINTED} of {len(table)} patients shown"
                          + ("; all of them in --out)" if out is not None else "; write all with --out)"))
    written = []
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".json":
            out.write_text(json.dumps(score.to_records(result), indent=2), encoding="utf-8")
        else:
            table.to_csv(out, index=False)
        written.append(str(out))
    if single:
        import matplotlib.pyplot as plt

        target = plot or (out.with_suffix(".png") if out is not None
                          else Path("out/score") / f"{result.ids[0]}_pfs.png")
        target.parent.mkdir(parents=True, exist_ok=True)
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        score.plot_survival(result, 0, ax)
        fig.tight_layout()
        fig.savefig(target, dpi=110)
        plt.close(fig)
        written.append(str(target))
    if written:
        console.print(f"[green]wrote[/] {', '.join(written)}")


@app.command("serve")
def serve_command(
    model: str = typer.Option(None, "--model", help="Model URI or path [default: models:/rechallenge-pfs-cox"
                              "@champion; fitted and registered if the registry has none]."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
) -> None:
    """Serve the scoring API (/score, /health, /docs) and the page for one patient (/)."""
    import uvicorn

    from ml import score, serve

    try:
        scorer, uri, notes = score.resolve_scorer(model)
    except ValueError as exc:
        fail(str(exc))
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    console.print(f"serving {uri} on http://{host}:{port}/ (API docs: /docs)")
    uvicorn.run(serve.create_app(uri, scorer=scorer, notes=notes), host=host, port=port, log_level="warning")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
