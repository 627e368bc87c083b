"""The analysis's conventions against R 4.2 / survival 3.5 as the oracle (tests/r_oracle.py).

- the propensity model is `glm(family = binomial)`'s MLE: coefficients on the same design
  matrix and fitted propensities from R's own coding of the raw table, to 1e-8;
- Kaplan-Meier medians and their log-log 95 % CI bounds are `quantile(survfit(...))`, exact 0.5
  plateaus (R's midpoint rule) included, on constructed plateaus, twin cohorts, tie-heavy twins,
  R's `lung` and `veteran`;
- the IPTW Cox HR with its naive and robust SE is `coxph(..., weights = w, robust = TRUE)` with
  Efron ties.

Each test batches its data sets into one Rscript call.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import schema
from features.twin import generate
from ml.stats import km
from ml.stats.cox import fit_cox
from ml.stats.weighting import estimate_iptw, fit_propensity
from ml.workflows.analysis import AnalysisConfig, run_analysis
from tests.r_oracle import needs_r, run_r

TWINS = {"t101": (None, None), "t500": (500, 11), "t2000": (2000, 12)}
"""Twin cohorts: (n, seed); the first is the default twin (n = 101, its named seed)."""
GLM_TOL = 1e-8
R_TOL = 1e-6

R_RAW_GLM = ("treatment == 'CIA' ~ age + factor(sex) + factor(smoking) + factor(ecog) + factor(histology)"
             " + factor(pdl1) + factor(prior_response) + factor(brain_mets) + factor(liver_mets)"
             " + factor(bone_mets)")


@pytest.fixture(scope="module")
def twins() -> dict[str, pd.DataFrame]:
    return {name: generate(n=n, seed=seed).data for name, (n, seed) in TWINS.items()}


def _as_r_numbers(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=float)


# --- propensity: glm ------------------------------------------------------------------------------


@pytest.mark.slow
@needs_r()
def test_propensity_is_the_glm_mle(twins):
    """Same design matrix: same coefficients; R's own factor coding of the raw table: same fitted
    propensities (the MLE's fitted values do not depend on the coding or the scaling)."""
    frames, ours = {}, {}
    for name, df in twins.items():
        model = fit_propensity(df)
        design = model.named_steps["pre"].transform(df)
        x = pd.DataFrame(design.to_numpy(float), columns=[f"x{i}" for i in range(design.shape[1])])
        x["treated"] = (df[schema.TREATMENT] == schema.TREATED).astype(int).to_numpy()
        frames[f"x_{name}"], frames[f"raw_{name}"] = x, df
        logit = model.named_steps["logit"]
        ours[name] = (np.r_[logit.intercept_, logit.coef_[0]], model.predict_proba(df)[:, 1])
    script = "ctl <- glm.control(epsilon = 1e-14, maxit = 100)\n" + "".join(
        f"fit <- glm(treated ~ ., data = x_{n}, family = binomial, control = ctl)\n"
        f"emit('coef_{n}', coef(fit)); emit('default_{n}', coef(glm(treated ~ ., data = x_{n}, "
        "family = binomial)))\n"
        f"emit('fitted_{n}', fitted(glm({R_RAW_GLM}, data = raw_{n}, family = binomial, control = ctl)))\n"
        for n in twins)
    r = run_r(script, **frames)
    for name, (coef, fitted) in ours.items():
        assert np.all(np.isfinite(r[f"coef_{name}"])), name  # no aliased column in the design
        np.testing.assert_allclose(coef, r[f"coef_{name}"], rtol=GLM_TOL, atol=GLM_TOL, err_msg=name)
        np.testing.assert_allclose(fitted, r[f"fitted_{name}"], rtol=0, atol=GLM_TOL, err_msg=name)
        # R's default stopping rule (relative deviance change 1e-8) is itself ~1e-8 off its MLE
        np.testing.assert_allclose(coef, r[f"default_{name}"], rtol=1e-6, atol=1e-6, err_msg=name)


# --- Kaplan-Meier medians: quantile(survfit) -----------------------------------------------------

R_KM = """
km_q <- function(time, event) {
  q <- quantile(survfit(Surv(time, event) ~ 1, conf.type = 'log-log'), 0.5)
  v <- c(q$quantile, q$lower, q$upper)
  ifelse(is.na(v), NaN, v)
}
for (s in unique(d$set)) emit(s, km_q(d$time[d$set == s], d$event[d$set == s]))
for (s in unique(dw$set)) {
  x <- dw[dw$set == s, ]
  m <- quantile(survfit(Surv(time, event) ~ 1, data = x, weights = w), 0.5, conf.int = FALSE)
  emit(s, ifelse(is.na(m), NaN, m))
}
r_sets <- list(lung = data.frame(time = lung$time, event = lung$status == 2, g = lung$sex),
               veteran = data.frame(time = veteran$time, event = veteran$status, g = veteran$trt))
for (nm in names(r_sets)) {
  x <- r_sets[[nm]]
  emit(paste0('data_', nm, '_time'), x$time); emit(paste0('data_', nm, '_event'), x$event)
  emit(paste0('data_', nm, '_g'), x$g)
  emit(nm, km_q(x$time, x$event))
  for (g in sort(unique(x$g))) emit(paste0(nm, '_', g), km_q(x$time[x$g == g], x$event[x$g == g]))
}
"""


def _plateaus() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Curves that sit on exactly 0.5 over an interval, and the midpoints R returns."""
    return {
        "ten_five_deaths_then_more": (np.arange(1.0, 11.0), np.ones(10)),        # S = 0.5 on [5, 6)
        "ten_five_deaths_then_censored": (np.arange(1.0, 11.0), np.r_[np.ones(5), np.zeros(5)]),
        "tied_half": (np.array([2.0, 2, 2, 2, 5, 7, 9, 10]), np.array([1, 1, 1, 1, 1, 0, 1, 0.0])),
        "six_all_die": (np.arange(1.0, 7.0), np.ones(6)),  # S = 0 at the end: R's bounds are NA there
        "four_all_die_tied": (np.array([1.0, 3, 3, 4]), np.ones(4)),
    }


def _km_sets(twins: dict[str, pd.DataFrame]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    sets = _plateaus()
    for name, df in twins.items():
        for ep, (tcol, ecol) in schema.ENDPOINTS.items():
            for g in ("all", schema.TREATED, schema.CONTROL):
                part = df if g == "all" else df[df[schema.TREATMENT] == g]
                time, event = part[tcol].to_numpy(float), part[ecol].to_numpy(float)
                sets[f"{name}_{ep}_{g}"] = (time, event)
                sets[f"{name}_{ep}_{g}_ties"] = (np.ceil(time / 2), event)  # 2-month grid: heavy ties
    return sets


def _weighted_km_sets(twins: dict[str, pd.DataFrame]) -> dict[str, tuple[np.ndarray, ...]]:
    """IPTW-weighted curves per group (the analysis's weighted medians), and a weighted plateau."""
    sets = {"weighted_plateau": (np.arange(1.0, 7.0), np.ones(6), np.array([2.0, 1, 1, 2, 1, 1]))}
    for name, df in twins.items():
        iptw = estimate_iptw(df)
        for ep, (tcol, ecol) in schema.ENDPOINTS.items():
            for g, mask in ((schema.TREATED, iptw.treated), (schema.CONTROL, ~iptw.treated)):
                time, event = df[tcol].to_numpy(float)[mask], df[ecol].to_numpy(float)[mask]
                sets[f"w_{name}_{ep}_{g}"] = (time, event, iptw.weights[mask])
                sets[f"w_{name}_{ep}_{g}_ties"] = (np.ceil(time / 2), event, iptw.weights[mask])
    return sets


@pytest.mark.slow
@needs_r()
def test_km_median_and_ci_are_survfit_quantiles(twins):
    sets = _km_sets(twins)
    weighted = _weighted_km_sets(twins)
    d = pd.concat([pd.DataFrame({"set": name, "time": t, "event": e}) for name, (t, e) in sets.items()])
    dw = pd.concat([pd.DataFrame({"set": name, "time": t, "event": e, "w": w})
                    for name, (t, e, w) in weighted.items()])
    r = run_r(R_KM, d=d, dw=dw)
    for name, (time, event, w) in weighted.items():
        assert km.km_median_fast(time, event, w) == pytest.approx(r[name][0], rel=R_TOL, nan_ok=True), name
    assert r["weighted_plateau"][0] == 3.5  # S = 1 - (2 + 1 + 1) / 8 = 0.5 on [3, 4)
    for name in ("lung", "veteran"):
        time, event, g = (r[f"data_{name}_{c}"] for c in ("time", "event", "g"))
        sets[name] = (time, event)
        sets |= {f"{name}_{v:g}": (time[g == v], event[g == v]) for v in np.unique(g)}
    plateaus = 0
    for name, (time, event) in sets.items():
        ours = km.km_median(time, event)
        np.testing.assert_allclose([ours.median, ours.ci_low, ours.ci_high], r[name], rtol=R_TOL,
                                   err_msg=name)
        assert km.km_median_fast(time, event) == pytest.approx(r[name][0], rel=R_TOL, nan_ok=True)
        plateaus += bool(np.any(np.abs(km.km_curve(time, event).survival - 0.5) < km.MEDIAN_TOL))
    assert plateaus >= 3  # the rule is exercised, not only the plain crossings
    assert r["ten_five_deaths_then_more"][0] == 5.5 and r["ten_five_deaths_then_censored"][0] == 7.5
    assert r["tied_half"][0] == 3.5


# --- the IPTW Cox HR: coxph(weights = w, robust = TRUE) -------------------------------------------

R_COX = """
for (s in unique(d$set)) {
  x <- d[d$set == s, ]
  fit <- coxph(Surv(time, event) ~ treated, data = x, weights = w, robust = TRUE, ties = 'efron')
  emit(s, c(coef(fit), sqrt(fit$naive.var), sqrt(vcov(fit))))
}
"""


def _cox_sets(twins: dict[str, pd.DataFrame]) -> dict[str, tuple[np.ndarray, ...]]:
    sets = {}
    for name, df in twins.items():
        for estimand in ("ate", "att", "overlap"):
            iptw = estimate_iptw(df, estimand=estimand)
            for ep, (tcol, ecol) in schema.ENDPOINTS.items():
                time, event = df[tcol].to_numpy(float), df[ecol].to_numpy(float)
                sets[f"{name}_{estimand}_{ep}"] = (time, event, iptw.treated, iptw.weights)
                sets[f"{name}_{estimand}_{ep}_ties"] = (np.ceil(time / 2), event, iptw.treated, iptw.weights)
    return sets


@pytest.mark.slow
@needs_r()
def test_iptw_cox_hr_naive_and_robust_se_are_coxph(twins):
    sets = _cox_sets(twins)
    d = pd.concat([pd.DataFrame({"set": k, "time": t, "event": e, "treated": x.astype(int), "w": w})
                   for k, (t, e, x, w) in sets.items()])
    r = run_r(R_COX, d=d)
    for name, (time, event, treated, w) in sets.items():
        fit = fit_cox(time, event, treated.astype(float), w)
        ours = [fit.coef[0], fit.se_model[0], fit.se_robust[0]]
        np.testing.assert_allclose(ours, r[name], rtol=R_TOL, err_msg=name)


@pytest.mark.slow
def test_iptw_cox_reports_both_intervals_and_names_the_primary(twins):
    df = twins["t101"]
    with_boot = run_analysis(df, AnalysisConfig(bootstrap=20))
    without = run_analysis(df, AnalysisConfig(bootstrap=0))
    for ep in schema.ENDPOINTS:
        boot, plain = with_boot.iptw_cox[ep], without.iptw_cox[ep]
        assert boot["primary_ci"] == "bootstrap_percentile" and plain["primary_ci"] == "robust"
        assert (boot["ci_low"], boot["ci_high"]) == (boot["ci_low_bootstrap_percentile"],
                                                     boot["ci_high_bootstrap_percentile"])
        assert boot["p"] == boot["p_bootstrap"]
        assert (plain["ci_low"], plain["ci_high"], plain["p"]) == (
            plain["ci_low_robust"], plain["ci_high_robust"], plain["p_robust"])
        # the robust interval is the same number with or without the bootstrap
        assert boot["ci_low_robust"] == plain["ci_low_robust"]
        z = 1.959963984540054
        robust_low = np.exp(plain["log_hr"] - z * plain["se_log_hr_robust"])
        assert plain["ci_low_robust"] == pytest.approx(robust_low)
    assert "conservative" not in with_boot.methods["iptw_cox"].replace("not reliably conservative", "")
