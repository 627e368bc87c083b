"""R as the oracle for the Cox tables' joint tests and the log-rank tests.

On five data sets (two twin cohorts, one with missing ages, the tie-heavy version of one with
times rounded up to whole months, R's `lung` with ph.ecog as a 4-level factor and `veteran`
with its 4-level celltype), checked in two Rscript calls:
- the Cox model: HR and model-based SE; weighted (robust = TRUE): HR, naive and robust SE;
- per covariate, multivariable and univariable: the joint type-III Wald test
  (`car::Anova(fit, type = "III", test.statistic = "Wald")`) and the likelihood-ratio test
  (`drop1(fit, test = "Chisq")`) on the model's complete cases;
- the robust score test `coxph(Surv(time, status) ~ arm, weights, robust = TRUE)$rscore`,
  unweighted and weighted, Efron and Breslow ties; `survdiff(...)$chisq`.
All to 1e-6 relative.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import schema, twin
from ml.stats.cox import fit_cox
from ml.stats.cox_tables import cox_design, joint_tests, joint_tests_multivariable, joint_tests_univariable
from ml.stats.logrank import logrank, robust_logrank
from ml.stats.weighting import estimate_iptw
from tests.r_oracle import needs_r, run_r

RTOL = 1e-6
TWIN_COVARIATES = ["age", "smoking", "ecog", "histology", "pdl1", "prior_response", "liver_mets"]

FETCH = """
data(cancer, package = "survival")
l <- lung
write.csv(data.frame(time = l$time, status = as.integer(l$status == 2), arm = as.integer(l$sex == 2),
                     age = l$age, ph.ecog = l$ph.ecog, ph.karno = l$ph.karno, wt.loss = l$wt.loss),
          file.path(OUT, "lung.csv"), row.names = FALSE)
v <- veteran
write.csv(data.frame(time = v$time, status = v$status, arm = as.integer(v$trt == 2),
                     celltype = as.character(v$celltype), karno = v$karno, age = v$age,
                     prior = as.integer(v$prior == 10)),
          file.path(OUT, "veteran.csv"), row.names = FALSE)
"""

CHECK = """
check <- function(d, key, covs) {
  out <- function(name, values) emit(paste0(key, ":", name), values)
  dm <- na.omit(d[, c("time", "status", "w", covs)])
  f <- as.formula(paste("Surv(time, status) ~", paste(covs, collapse = " + ")))
  fit <- coxph(f, data = dm)
  out("coef", coef(fit)); out("se", sqrt(diag(vcov(fit)))); out("n", fit$n)
  a <- car::Anova(fit, type = "III", test.statistic = "Wald")
  out("wald", a$Chisq); out("df", a$Df)
  out("lr", drop1(fit, test = "Chisq")$LRT[-1])
  wfit <- coxph(f, data = dm, weights = w, robust = TRUE)
  out("wcoef", coef(wfit)); out("wse_naive", sqrt(diag(wfit$naive.var)))
  out("wse_robust", sqrt(diag(vcov(wfit))))
  for (cov in covs) {
    du <- na.omit(d[, c("time", "status", cov)])
    ufit <- coxph(as.formula(paste("Surv(time, status) ~", cov)), data = du)
    out("uni_wald", car::Anova(ufit, type = "III", test.statistic = "Wald")$Chisq)
    out("uni_lr", drop1(ufit, test = "Chisq")$LRT[-1])
  }
  for (tt in c("efron", "breslow")) {
    out(paste0("rscore_", tt), coxph(Surv(time, status) ~ arm, data = d, robust = TRUE, ties = tt)$rscore)
    out(paste0("rscore_w_", tt),
        coxph(Surv(time, status) ~ arm, data = d, weights = w, robust = TRUE, ties = tt)$rscore)
  }
  out("survdiff", survdiff(Surv(time, status) ~ arm, data = d)$chisq)
}
as_factor <- function(d, levels) {
  for (cov in names(levels)) d[[cov]] <- factor(d[[cov]], levels = levels[[cov]])
  d
}
"""


def _r_levels(covariates: list[str]) -> str:
    """R's list(cov = c(levels...)) of the twin's categories, reference first (our coding)."""
    ordinal = {k: tuple(int(v) for v in vals) for k, vals in schema.ORDINAL_LEVELS.items()}
    cats = {**schema.CATEGORIES, **ordinal}
    items = [f"`{c}` = c({', '.join(repr(v) if isinstance(v, str) else str(v) for v in cats[c])})"
             for c in covariates if c in cats]
    return f"list({', '.join(items)})"


def _standard(df: pd.DataFrame, endpoint: str, weights: np.ndarray) -> pd.DataFrame:
    """time, status, arm (CIA = 1), w and the covariates of a twin cohort frame."""
    tcol, ecol = schema.ENDPOINTS[endpoint]
    return pd.DataFrame({"time": df[tcol], "status": df[ecol].astype(int),
                         "arm": (df[schema.TREATMENT] == schema.TREATED).astype(int), "w": weights,
                         schema.TREATMENT: df[schema.TREATMENT], **{c: df[c] for c in TWIN_COVARIATES}})


def _twins():
    """Three twin cohort frames (PFS / OS endpoint, IPTW weights) with the endpoint they use."""
    small = twin.generate(n=300, seed=11).data
    default = twin.generate(n=101, seed=None).data
    default.loc[default.index[::9], "age"] = np.nan  # complete cases differ between the models
    tied = small.assign(os_months=np.ceil(small["os_months"]))
    return {"twin300": (small, "pfs"), "twin101_na": (default, "pfs"), "twin300_tied": (tied, "os")}


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    """Our frames and R's numbers on them: {key: (frame, covariates, R values)}."""
    folder = tmp_path_factory.mktemp("r-data")
    run_r(f"OUT <- {str(folder)!r}\n" + FETCH)
    rng = np.random.default_rng(1709)
    lung = pd.read_csv(folder / "lung.csv").assign(**{"ph.ecog": lambda d: d["ph.ecog"].astype("Int64")})
    veteran = pd.read_csv(folder / "veteran.csv")
    sets = {"lung": (lung.assign(w=rng.gamma(2.0, 0.5, len(lung))), ["age", "ph.ecog", "wt.loss", "arm"]),
            "veteran": (veteran.assign(w=rng.gamma(2.0, 0.5, len(veteran))),
                        ["arm", "celltype", "karno", "age", "prior"])}
    covs = [schema.TREATMENT, *TWIN_COVARIATES]
    cohorts = _twins()
    for key, (df, endpoint) in cohorts.items():
        sets[key] = (_standard(df, endpoint, estimate_iptw(df).weights), covs)  # IPTW (ATE)
    script = [CHECK]
    for key, (_, cov) in sets.items():
        if key in ("lung", "veteran"):
            factor = "ph.ecog" if key == "lung" else "celltype"
            script.append(f"{key}${factor} <- factor({key}${factor})")
        elif key.startswith("twin"):
            script.append(f"{key} <- as_factor({key}, {_r_levels(cov)})")
        script.append(f"check({key}, {key!r}, c({', '.join(map(repr, cov))}))")
    frames = {key: frame for key, (frame, _) in sets.items()}
    values = run_r("\n".join(script), packages=("car",), **frames)
    return {key: (frame, cov, {k.split(":", 1)[1]: v for k, v in values.items() if k.startswith(key + ":")})
            for key, (frame, cov) in sets.items()} | {"_cohorts": cohorts}


def _design(frame: pd.DataFrame, covariates: list[str]) -> pd.DataFrame:
    """Our Cox design, categories as strings (reference: the first level, as R's factor)."""
    as_text = frame.copy()
    for cov in ("ph.ecog", "celltype"):
        if cov in as_text:
            as_text[cov] = as_text[cov].map(lambda v: np.nan if pd.isna(v) else str(v)).astype(object)
    return cox_design(as_text, covariates)


DATA_SETS = ["twin300", "twin101_na", "twin300_tied", "lung", "veteran"]


@pytest.mark.slow
@needs_r("survival", "car")
@pytest.mark.parametrize("key", DATA_SETS)
def test_cox_fit_and_joint_tests_equal_r(oracle, key):
    frame, covariates, r = oracle[key]
    design = _design(frame, covariates)
    data = design.assign(time=frame["time"], status=frame["status"], w=frame["w"]).dropna()
    x = data[design.columns]
    fit = fit_cox(data["time"], data["status"], x)
    np.testing.assert_allclose(fit.coef, r["coef"], rtol=RTOL)
    np.testing.assert_allclose(fit.se_model, r["se"], rtol=RTOL)
    assert fit.n == r["n"][0]
    weighted = fit_cox(data["time"], data["status"], x, weights=data["w"])
    np.testing.assert_allclose(weighted.coef, r["wcoef"], rtol=RTOL)
    np.testing.assert_allclose(weighted.se_model, r["wse_naive"], rtol=RTOL)
    np.testing.assert_allclose(weighted.se_robust, r["wse_robust"], rtol=RTOL)
    joint = joint_tests(fit)
    assert list(joint["covariate"]) == covariates
    np.testing.assert_array_equal(joint["df"], r["df"])
    np.testing.assert_allclose(joint["wald_chisq"], r["wald"], rtol=RTOL)
    np.testing.assert_allclose(joint["lr_chisq"], r["lr"], rtol=RTOL)
    uni = pd.concat([joint_tests(fit_cox(d["time"], d["status"], d.drop(columns=["time", "status"])))
                     for d in (_design(frame, [c]).assign(time=frame["time"], status=frame["status"]).dropna()
                               for c in covariates)], ignore_index=True)
    np.testing.assert_allclose(uni["wald_chisq"], r["uni_wald"], rtol=RTOL)
    np.testing.assert_allclose(uni["lr_chisq"], r["uni_lr"], rtol=RTOL)


@pytest.mark.slow
@needs_r("survival", "car")
@pytest.mark.parametrize("key", [k for k in DATA_SETS if k.startswith("twin")])
def test_the_analysis_joint_tests_equal_r_on_the_twin(oracle, key):
    """The analysis's own entry points (cohort frame -> design -> complete cases) give R's tests."""
    df, endpoint = oracle["_cohorts"][key]
    _, _, r = oracle[key]
    multi = joint_tests_multivariable(df, TWIN_COVARIATES, endpoint)
    np.testing.assert_allclose(multi["wald_chisq"], r["wald"], rtol=RTOL)
    np.testing.assert_allclose(multi["lr_chisq"], r["lr"], rtol=RTOL)
    np.testing.assert_allclose(multi["n"], r["n"][0])
    uni = joint_tests_univariable(df, TWIN_COVARIATES, endpoint)
    np.testing.assert_allclose(uni["wald_chisq"], r["uni_wald"], rtol=RTOL)
    np.testing.assert_allclose(uni["lr_chisq"], r["uni_lr"], rtol=RTOL)


@pytest.mark.slow
@needs_r("survival", "car")
@pytest.mark.parametrize("key", DATA_SETS)
def test_logrank_and_robust_score_tests_equal_r(oracle, key):
    frame, _, r = oracle[key]
    time, status, arm, w = frame["time"], frame["status"], frame["arm"].astype(bool), frame["w"]
    for ties in ("efron", "breslow"):
        assert robust_logrank(time, status, arm, ties=ties).statistic == pytest.approx(
            r[f"rscore_{ties}"][0], rel=RTOL)
        assert robust_logrank(time, status, arm, w, ties=ties).statistic == pytest.approx(
            r[f"rscore_w_{ties}"][0], rel=RTOL)
    assert robust_logrank(time, status, arm, w).statistic == pytest.approx(r["rscore_w_efron"][0], rel=RTOL)
    assert logrank(time, status, arm).statistic == pytest.approx(r["survdiff"][0], rel=RTOL)
