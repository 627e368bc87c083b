"""Section 4's adjusted curves and RMST, read from analysis.json's `causal` block (made by
`rechallenge analyze` when its causal part ran): per endpoint the adjusted survival at the
horizons, the RMST per arm and the contrasts between arms, the RMST difference over tau, the
E-values, and the methods. Without the block, one statement says that analyze did not compute it."""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import pandas as pd

from ml.reporting.report.figures import svg
from ml.reporting.report.tables import ci_text, gt_html, p_text

ABSENT = ("Adjusted survival curves and restricted mean survival time (RMST): not computed by this "
          "version of analyze.")


def _statement(text: str) -> str:
    return f'<p class="statement">{html.escape(text)}</p>'


def adjusted_table(block: dict) -> pd.DataFrame:
    """estimator, arm, horizon, S (95% CI), and the difference between arms."""
    rows = []
    for est, arms in block.get("adjusted_survival", {}).items():
        diffs = block.get("adjusted_differences", {}).get(est, {})
        for time in next(iter(arms.values()), {}):
            row = {"estimator": est, "time (months)": time}
            for arm, at in arms.items():
                v = at[time]
                row[f"S, {arm}"] = ci_text(v["survival"], v["ci_low"], v["ci_high"], 3)
            d = diffs.get(time)
            if d:
                row[f"difference ({block.get('difference', 'arm 1 minus arm 2')})"] = ci_text(
                    d["difference"], d["ci_low"], d["ci_high"], 3)
            rows.append(row)
    return pd.DataFrame(rows)


def rmst_table(block: dict) -> pd.DataFrame:
    """estimator, RMST per arm (95% CI), each contrast (95% CI) and its p."""
    rows = []
    for est, arms in block.get("rmst", {}).items():
        row = {"estimator": est}
        row |= {f"RMST {arm}": ci_text(v["rmst"], v["ci_low"], v["ci_high"], 2) for arm, v in arms.items()}
        for contrast, v in block.get("rmst_contrasts", {}).get(est, {}).items():
            row[contrast] = ci_text(v["estimate"], v["ci_low"], v["ci_high"], 2)
            row[f"p ({contrast})"] = p_text(v.get("p"))
        rows.append(row)
    return pd.DataFrame(rows)


def rmst_by_tau_figure(block: dict, title: str):
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for i, (est, rows) in enumerate(block.get("rmst_by_tau", {}).items()):
        frame = pd.DataFrame(rows)
        ax.plot(frame["tau"], frame["difference"], color=f"C{i}", label=est)
        ax.fill_between(frame["tau"], frame["ci_low"], frame["ci_high"], color=f"C{i}", alpha=0.15, lw=0)
    ax.axhline(0, color="0.4", lw=0.8, ls="--")
    if block.get("tau") is not None:
        ax.axvline(block["tau"], color="0.4", lw=0.8, ls=":", label=f"tau = {block['tau']:.1f}")
    ax.set_xlabel("tau (months)")
    ax.set_ylabel(f"RMST difference (months)\n{block.get('difference', '')}")
    ax.set_title(title, fontsize=9, loc="left")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


EVALUE_COLUMNS = ("measure", "estimate", "ci_low", "ci_high", "evalue", "evalue_ci", "estimator")


def _evalues(block: dict) -> pd.DataFrame:
    """One row per E-value: the effect, its CI, the E-values of the estimate and of the CI bound."""
    return pd.DataFrame([{"quantity": k, **{c: v[c] for c in EVALUE_COLUMNS if c in v}}
                         for k, v in block.get("evalues", {}).items()])


def _endpoint_blocks(name: str, block: dict) -> list[str]:
    key = name.lower()
    out = [gt_html(adjusted_table(block), f"adjusted-{key}", f"{name}: adjusted survival at the horizons",
                   subtitle=f"estimand: {block.get('estimand', '')}", digits=3),
           gt_html(rmst_table(block), f"rmst-{key}", f"{name}: restricted mean survival time up to "
                   f"tau = {block.get('tau', float('nan')):.1f} months ({block.get('tau_chosen', '')})")]
    if block.get("rmst_by_tau"):
        fig = rmst_by_tau_figure(block, f"{name}: RMST difference by tau, 95% CI")
        out.append(f"<figure>{svg(fig, f'{name} RMST difference by tau')}<figcaption>{html.escape(name)}: "
                   "RMST difference as a function of the truncation time tau</figcaption></figure>")
    if block.get("evalues"):
        out.append(gt_html(_evalues(block), f"evalues-{key}", f"{name}: E-values", digits=2))
    return out


def causal_blocks(causal: dict | None) -> list[str]:
    """The HTML of the causal part, or the statement that analyze did not compute it."""
    if not causal:
        return [_statement(ABSENT)]
    out: list[str] = []
    try:
        for ep, name in (("pfs", "PFS"), ("os", "OS")):
            if isinstance(causal.get(ep), dict):
                out += _endpoint_blocks(name, causal[ep])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return [_statement(f"The causal block of analysis.json has an unexpected shape ({exc!r}); "
                           "see analysis.json.")]
    methods = causal.get("methods") or {}
    out += [f"<p class='method'><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</p>"
            for k, v in methods.items()]
    return out or [_statement(ABSENT)]
