"""`rechallenge explain`: SHAP per model and the signal check."""

from __future__ import annotations

from pathlib import Path

import typer

from ml.cli.runner import DataOpt, DropOpt, EventOpt, TimeOpt, TreatedOpt, TreatmentOpt, app, console, fail
from ml.reporting import display


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
    from ml import models as zoo
    from ml.explain import explainers as ex
    from ml.reporting import explain_plots

    if data is None and dataset not in DATASETS:
        fail(f"unknown data set '{dataset}'; choose from {', '.join(DATASETS)}")
    is_twin = data is None and dataset == "twin"
    try:
        cfg = twin.load_config(config) if is_twin else None
        if is_twin:
            prepared = ex.twin_data(n=n, seed=seed, config=cfg)
        else:
            from ml.workflows import benchmark as bench

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
        from ml.tracking import mlflow_io as tracking

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
