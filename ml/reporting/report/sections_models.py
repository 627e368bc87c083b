"""Sections 6-9 (prediction models, explanations, TRIPOD+AI, methods and reproducibility)."""

from __future__ import annotations

import html

import pandas as pd

from ml.reporting import dca, model_plots, nomogram, validation_plots
from ml.reporting.report import tripod
from ml.reporting.report.sections import SECTIONS, Section, _title, figure, statement
from ml.reporting.report.tables import ci_text, gt_html

LEADERBOARD = (("harrell_c", "Harrell C"), ("uno_c", "Uno C"), ("ibs", "IBS"),
               ("calibration_slope_12", "calibration slope (12)"), ("delta_c_vs_cox", "ΔC vs Cox"))


def leaderboard_table(board: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    rows = []
    for r in board.to_dict("records"):
        row = {"model": labels.get(r["model"], r["model"])}
        for metric, name in LEADERBOARD:
            if metric == "delta_c_vs_cox" and r["model"] == "cox":
                row[name] = "reference"
            elif metric in r:
                row[name] = ci_text(r[metric], r.get(f"{metric}_ci_low"), r.get(f"{metric}_ci_high"))
        rows.append(row)
    return pd.DataFrame(rows)


def _leaderboard_blocks(c) -> list[str]:
    if c.leaderboard is None:
        return [statement(f"Leaderboard: {c.unavailable.get('benchmark', 'not run')}")]
    table = gt_html(leaderboard_table(c.leaderboard, c.model_labels), "leaderboard",
                    "Leaderboard: cross-validated performance, mean (95% CI)",
                    note=c.methods.get("benchmark", {}).get("ci", ""))
    fig = model_plots.leaderboard_figure(c.leaderboard, c.model_labels)
    return [table, figure(fig, "Discrimination per model (Harrell and Uno C), Cox baseline and 0.5 marked")]


def _validation_blocks(c) -> list[str]:
    if c.internal is None:
        return [statement(f"Internal validation: {c.unavailable.get('validation', 'not run')}")]
    model = c.internal["model"].iloc[0]
    table = gt_html(c.internal.drop(columns="model"), "internal",
                    f"Internal validation of {model}: bootstrap optimism correction", digits=3)
    groups, smooth = c.calibration
    horizons = list(dict.fromkeys(smooth["horizon"])) if len(smooth) else list(c.horizons)
    fig = validation_plots.calibration_figure(groups, horizons, unit=" months", smooth=smooth,
                                              title=f"Calibration of {model}")
    return [table, figure(fig, "Calibration at each horizon with bootstrap 95% bands")]


def _dca_blocks(c) -> list[str]:
    if c.dca is None:
        return [statement(f"Decision curves: {c.unavailable.get('decision curves', 'not run')}")]
    caption = "Decision curves: net benefit vs threshold probability (models, treat all, treat none)"
    return [figure(dca.dca_figure(c.dca, c.model_labels), caption)]


def _nomogram_blocks(c) -> list[str]:
    if c.nomogram is None:
        return [statement(f"Nomogram: {c.unavailable.get('nomogram', 'not run')}")]
    fig = nomogram.nomogram_figure(c.nomogram, f"Nomogram of the served model ({c.nomogram.model})")
    return [figure(fig, "Nomogram: points per covariate, total points to S(6), S(12) and median PFS")]


def models_section(c) -> Section:
    reading = ("Several survival models were compared on the same cross-validation folds. The C-index is "
               "the chance that, of two patients, the one who progresses first had the higher predicted risk "
               "(0.5 = coin toss); the integrated Brier score (IBS) measures the error of predicted survival "
               "(lower is better); a calibration slope below 1 means too extreme predictions. Internal "
               "validation corrects the apparent figures for optimism by the bootstrap. The decision curves "
               "show, for each risk threshold at which one would act, whether using a model does more good "
               "than acting for everyone or no one. The nomogram turns the served model into points that "
               "can be added by hand.")
    if c.leaderboard is not None and "cox" in set(c.leaderboard["model"]):
        best = c.leaderboard.sort_values("harrell_c", ascending=False).iloc[0]
        reading += f" The best cross-validated Harrell C is {best['harrell_c']:.3f} ({best['model']})."
    blocks = [*_leaderboard_blocks(c), *_validation_blocks(c), *_dca_blocks(c), *_nomogram_blocks(c)]
    return Section("models", _title("models"), reading, blocks)


def explain_section(c) -> Section:
    if not c.shap:
        return Section("explain", _title("explain"), "No model could be explained.",
                       [statement(c.unavailable.get("explanations", "not run"))])
    reading = ("SHAP values split each patient's predicted risk into contributions of the features. Points "
               "right of zero raise the predicted risk. A categorical feature is shown level by level; a "
               "numeric one is coloured by its value. For the Cox model the scale is the log hazard, so "
               "exp(SHAP) is the factor by which that feature multiplies the hazard.")
    blocks = []
    for item in c.shap:
        hazard = item["scale"] == "log-hazard"
        fig = model_plots.shap_levels_figure(item["frame"], f"{item['model']}: SHAP of the risk score "
                                                            f"({item['scale']}, {item['method']})", hazard)
        blocks.append(figure(fig, f"SHAP summary of {item['model']} ({item['scale']} scale)"))
    if c.signal_check is not None:
        reading += (" On the twin the true effects are known: the signal check says whether each model "
                    "ranks the truly important features on top with the right direction.")
        blocks.append(gt_html(c.signal_check, "signals",
                              "Signal check against the twin's true log hazard ratios"))
    return Section("explain", _title("explain"), reading, blocks)


def tripod_section(c) -> Section:
    anchors = {f"#{key}": title for key, title in SECTIONS} | {"#top": "the report title"}
    rows = pd.DataFrame(tripod.rows(anchors)).drop(columns="link")
    answered = int(rows["answer"].str.startswith("answered").sum())
    reading = (f"TRIPOD+AI lists what a prediction-model report should contain. This report answers "
               f"{answered} of its {len(rows)} items and sub-items; the others need information that is not "
               "in the data "
               "(to be supplied by the author) or do not apply, with the reason given.")
    return Section("tripod", _title("tripod"), reading,
                   [gt_html(rows, "tripod", "TRIPOD+AI checklist (topics paraphrased)")])


def _kv_table(mapping: dict, table_id: str, title: str, key: str = "item", value: str = "value") -> str:
    frame = pd.DataFrame({key: list(mapping), value: [str(v) for v in mapping.values()]})
    return gt_html(frame, table_id, title)


def methods_section(c) -> Section:
    reading = ("Every estimate above names its estimator here, with the package versions, the seeds and the "
               "command that reproduces the report's numbers (the same seeds give the same estimates).")
    blocks = [f'<pre class="command">{html.escape(c.command)}</pre>']
    for workflow, texts in c.methods.items():
        blocks.append(_kv_table(texts, f"methods-{workflow.replace(' ', '-')}", f"Methods: {workflow}",
                                "quantity", "estimator and convention"))
    blocks.append(_kv_table(c.settings, "settings", "Settings of this report"))
    blocks.append(_kv_table(c.seeds, "seeds", "Seeds"))
    blocks.append(_kv_table(c.versions, "versions", "Package versions", "package", "version"))
    blocks.append(_kv_table(c.run_ids or {"report": "not logged (--no-mlflow)"}, "runs", "MLflow runs",
                            "run", "id"))
    if c.unavailable:
        blocks.append(_kv_table(c.unavailable, "unavailable", "Parts not computed on this cohort", "part",
                                "why"))
    if c.warnings:
        blocks.append("<ul class='warnings'>" + "".join(f"<li>{html.escape(w)}</li>" for w in c.warnings[:40])
                      + "</ul>")
    return Section("methods", _title("methods"), reading, blocks)
