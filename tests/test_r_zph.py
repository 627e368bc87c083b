"""`ml.stats.ph.cox_zph` against R's survival::cox.zph (survival >= 3.0), to 1e-6 relative.

Data sets: a 300-patient twin (PFS, the analysis's multivariable design), the same twin with
OS times rounded up to whole months (heavy ties; Efron and Breslow), the twin's IPTW Cox for
treatment with its ATE weights, and R's `lung` and `veteran`. Each is fitted unweighted and
weighted, with every transform, per term and GLOBAL; factors are also fitted in R with
factor() and compared with our per-covariate rows. Our weighted fits use c * w with c != 1:
R's statistic scales with the weights, ours equals R's on w / mean(w) whatever the scale.
Two Rscript calls in all (one exports lung and veteran).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

from features import schema, twin
from ml.stats.cox import fit_cox
from ml.stats.cox_tables import cox_design
from ml.stats.ph import TRANSFORMS, cox_zph, zph_smooth
from ml.stats.weighting import estimate_iptw
from tests.r_oracle import needs_r, run_r

RTOL = 1e-6
VETERAN_CELLTYPES = ("squamous", "smallcell", "adeno", "large")  # R's level order (codes 1-4)

EXPORT = """
l <- na.omit(lung[, c("time", "status", "age", "sex", "ph.ecog", "wt.loss")])
for (v in names(l)) emit(paste0("lung_", v), l[[v]])
for (v in c("time", "status", "trt", "karno", "diagtime", "age", "prior"))
  emit(paste0("veteran_", v), veteran[[v]])
emit("veteran_celltype", as.integer(veteran$celltype))
"""

COMPARE = """
zph_case <- function(tag, d, rhs, ties) {
  for (wt in c("none", "w")) for (tr in c("km", "rank", "identity", "log")) {
    form <- as.formula(paste("Surv(time, status) ~", rhs))
    fit <- if (wt == "none") coxph(form, data = d, ties = ties)
           else coxph(form, data = d, ties = ties, weights = w / mean(w))
    z <- cox.zph(fit, transform = tr)$table
    emit(paste(tag, wt, tr, "chisq", sep = "|"), z[, "chisq"])
    emit(paste(tag, wt, tr, "df", sep = "|"), z[, "df"])
    emit(paste(tag, wt, tr, "p", sep = "|"), z[, "p"])
  }
}
"""

SMOOTH = """
fit <- coxph(Surv(time, status) ~ x1 + x2 + x3, data = smooth_d)
z <- cox.zph(fit)
emit("smooth_g", z$x); emit("smooth_time", z$time); emit("smooth_var", diag(z$var))
for (j in 1:3) emit(paste0("smooth_y", j), z$y[, j])
# what plot.cox.zph computes for the first term (df = 4, nsmo = 40)
pred.x <- seq(min(z$x), max(z$x), length = 40)
lmat <- splines::ns(c(pred.x, z$x), df = 4, intercept = TRUE)
pmat <- lmat[1:40, ]; qmat <- qr(lmat[-(1:40), ])
yhat <- pmat %*% qr.coef(qmat, z$y[, 1])
bk <- backsolve(qmat$qr[1:4, 1:4], diag(4))
seval <- ((pmat %*% (bk %*% t(bk))) * pmat) %*% rep(1, 4)
emit("smooth_fit", yhat); emit("smooth_high", yhat + 2 * sqrt(z$var[1, 1] * seval))
# R's statistic is not invariant to the scale of the weights: 5 w gives 5 times the chisq
fw <- coxph(Surv(time, status) ~ x1 + x2 + x3, data = smooth_d, weights = w)
f5 <- coxph(Surv(time, status) ~ x1 + x2 + x3, data = smooth_d, weights = 5 * w)
emit("scale_ratio", cox.zph(f5)$table[, "chisq"] / cox.zph(fw)$table[, "chisq"])
"""


def _columns_frame(time, status, design: pd.DataFrame, w) -> pd.DataFrame:
    x = design.to_numpy(dtype=float)
    out = pd.DataFrame(x, columns=[f"x{j + 1}" for j in range(x.shape[1])])
    return out.assign(time=np.asarray(time, float), status=np.asarray(status, int), w=np.asarray(w))


def _case(tag, time, status, design, w, ties="efron", raw=None, rhs_raw=None) -> dict:
    return {"tag": tag, "time": np.asarray(time, float), "status": np.asarray(status, bool),
            "design": design, "w": np.asarray(w, float), "ties": ties, "raw": raw, "rhs_raw": rhs_raw}


def _twin_cases() -> list[dict]:
    df = twin.generate(n=300, seed=11).data
    covariates = list(schema.COVARIATES)
    design = cox_design(df, covariates, treatment=True)
    w = np.random.default_rng(3).uniform(0.3, 3.0, len(df))
    raw = df[covariates].assign(treatment=df[schema.TREATMENT])
    factors = [c for c in covariates if design.columns.str.startswith(f"{c}=").any()]
    rhs = " + ".join(["treatment"] + [f"factor({c})" if c in factors else c for c in covariates])
    cases = [_case("twin_pfs", df["pfs_months"], df["pfs_event"], design, w, raw=raw, rhs_raw=rhs)]
    months = np.ceil(df["os_months"])
    for ties in ("efron", "breslow"):
        cases.append(_case(f"twin_os_tied_{ties}", months, df["os_event"], design, w, ties,
                           raw=raw, rhs_raw=rhs))
    iptw = estimate_iptw(df, list(schema.COVARIATES[:6]), "ate", True, None)
    treated = pd.DataFrame({"treatment=CIA": iptw.treated.astype(float)})
    cases.append(_case("twin_iptw", np.ceil(df["pfs_months"]), df["pfs_event"], treated, iptw.weights))
    return cases


def _r_data_cases(exported: dict[str, np.ndarray]) -> list[dict]:
    lung = pd.DataFrame({k[5:]: v for k, v in exported.items() if k.startswith("lung_")})
    vet = pd.DataFrame({k[8:]: v for k, v in exported.items() if k.startswith("veteran_")})
    rng = np.random.default_rng(5)
    cases = [_case("lung", lung["time"], lung["status"] == 2,
                   lung[["age", "sex", "ph.ecog", "wt.loss"]], rng.uniform(0.5, 2, len(lung)))]
    cell = pd.Series(np.array(VETERAN_CELLTYPES)[vet["celltype"].astype(int) - 1])
    design = pd.DataFrame({"trt": vet["trt"], "karno": vet["karno"], "age": vet["age"],
                           **{f"celltype={lv}": (cell == lv).astype(float)
                              for lv in VETERAN_CELLTYPES[1:]}})
    raw = pd.DataFrame({"trt": vet["trt"], "karno": vet["karno"], "age": vet["age"], "celltype": cell})
    cases.append(_case("veteran", vet["time"], vet["status"], design, rng.uniform(0.5, 2, len(vet)),
                       raw=raw, rhs_raw="trt + karno + age + factor(celltype)"))
    return cases


@functools.cache
def _oracle() -> tuple[list[dict], dict[str, np.ndarray]]:
    cases = _twin_cases() + _r_data_cases(run_r(EXPORT))
    frames, script = {}, [COMPARE]
    for i, c in enumerate(cases):
        frames[f"d{i}"] = _columns_frame(c["time"], c["status"], c["design"], c["w"])
        rhs = " + ".join(f"x{j + 1}" for j in range(c["design"].shape[1]))
        script.append(f"zph_case('{c['tag']}|term', d{i}, '{rhs}', '{c['ties']}')")
        if c["raw"] is not None:
            frames[f"g{i}"] = c["raw"].assign(time=c["time"], status=c["status"].astype(int), w=c["w"])
            script.append(f"zph_case('{c['tag']}|covariate', g{i}, '{c['rhs_raw']}', '{c['ties']}')")
    frames["smooth_d"] = frames["d0"].iloc[:, [0, 1, 3]].set_axis(["x1", "x2", "x3"], axis=1).assign(
        time=frames["d0"]["time"], status=frames["d0"]["status"], w=frames["d0"]["w"])
    return cases, run_r("\n".join(script) + SMOOTH, packages=("splines",), **frames)


def _ours(case: dict, weighted: bool, transform: str) -> pd.DataFrame:
    w = 5.0 * case["w"] if weighted else None  # any scale: the test is invariant to it
    fit = fit_cox(case["time"], case["status"], case["design"], w, ties=case["ties"])
    return cox_zph(fit, transform).table


CASES = ["twin_pfs", "twin_os_tied_efron", "twin_os_tied_breslow", "twin_iptw", "lung", "veteran"]


@pytest.mark.slow
@needs_r("survival", "splines")
@pytest.mark.parametrize("tag", CASES)
def test_per_term_and_global_equal_r_cox_zph(tag):
    cases, r = _oracle()
    case = next(c for c in cases if c["tag"] == tag)
    for weighted in (False, True):
        for transform in TRANSFORMS:
            ours = _ours(case, weighted, transform)
            rows = ours[ours["level"] != "covariate"]
            key = f"{tag}|term|{'w' if weighted else 'none'}|{transform}"
            np.testing.assert_allclose(rows["chisq"], r[f"{key}|chisq"], rtol=RTOL, err_msg=key)
            np.testing.assert_allclose(rows["p"], r[f"{key}|p"], rtol=RTOL, err_msg=key)
            np.testing.assert_array_equal(rows["df"], r[f"{key}|df"])


@pytest.mark.slow
@needs_r("survival", "splines")
@pytest.mark.parametrize("tag", ["twin_pfs", "twin_os_tied_efron", "twin_os_tied_breslow", "veteran"])
def test_per_covariate_rows_equal_r_fitted_with_factors(tag):
    """R's cox.zph groups a factor's levels into one term (df = levels - 1); so do our
    per-covariate rows, although our design has one column per level."""
    cases, r = _oracle()
    case = next(c for c in cases if c["tag"] == tag)
    for weighted in (False, True):
        for transform in TRANSFORMS:
            ours = _ours(case, weighted, transform)
            rows = ours[ours["level"] != "term"]
            key = f"{tag}|covariate|{'w' if weighted else 'none'}|{transform}"
            np.testing.assert_array_equal(rows["df"], r[f"{key}|df"])
            assert (rows["df"] > 1).any()  # at least one factor grouped
            np.testing.assert_allclose(rows["chisq"], r[f"{key}|chisq"], rtol=RTOL, err_msg=key)
            np.testing.assert_allclose(rows["p"], r[f"{key}|p"], rtol=RTOL, err_msg=key)


@needs_r("survival", "splines")
def test_scaled_residuals_and_smooth_equal_r_plot_cox_zph():
    cases, r = _oracle()
    c = cases[0]
    design = c["design"].iloc[:, [0, 1, 3]]
    z = cox_zph(fit_cox(c["time"], c["status"], design), "km")
    np.testing.assert_allclose(z.g, r["smooth_g"], rtol=1e-10)
    np.testing.assert_allclose(z.time, r["smooth_time"], rtol=1e-12)
    np.testing.assert_allclose(np.diag(z.var), r["smooth_var"], rtol=RTOL)
    for j in range(3):  # tied event times may come in another order: compare sorted within a time
        ours, theirs = z.beta_t.iloc[:, j].to_numpy(), r[f"smooth_y{j + 1}"]
        np.testing.assert_allclose(ours[np.lexsort((ours, z.g))],
                                   theirs[np.lexsort((theirs, r["smooth_g"]))], rtol=1e-8)
    smooth = zph_smooth(z.g, z.beta_t.iloc[:, 0].to_numpy(), z.var[0, 0])
    order = np.lexsort((z.beta_t.iloc[:, 0].to_numpy(), z.g))
    smooth_sorted = zph_smooth(z.g[order], z.beta_t.iloc[:, 0].to_numpy()[order], z.var[0, 0])
    np.testing.assert_allclose(smooth["fit"], smooth_sorted["fit"], rtol=1e-10)
    np.testing.assert_allclose(smooth["fit"], r["smooth_fit"], rtol=RTOL, atol=1e-9)
    np.testing.assert_allclose(smooth["high"], r["smooth_high"], rtol=RTOL, atol=1e-9)


@needs_r("survival", "splines")
def test_r_statistic_scales_with_the_weights_which_is_why_ours_rescales_them():
    _, r = _oracle()
    np.testing.assert_allclose(r["scale_ratio"], 5.0, rtol=1e-6)
