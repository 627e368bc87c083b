"""One patient's uncertainty: the Cox delta-method band and median CI against R's survfit.coxph,
and the properties of the bands (the estimate inside, wider with fewer patients, a seeded
bootstrap that repeats itself)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sksurv.util import Surv

from features import datasets
from features.pipeline import build_preprocessor
from ml.models import CoxPH
from ml.serving import results
from tests.r_oracle import needs_r, run_r

RIDGE = 0.5
R_SCRIPT = f"""
na <- function(v) ifelse(is.na(v), Inf, v)  # 'not reached' as Inf (the oracle reads numbers only)
band <- function(name, fit, new) {{
  sf <- survfit(fit, newdata = new, ctype = 1, conf.type = "log")
  emit(paste0(name, "_time"), sf$time)
  emit(paste0(name, "_surv"), sf$surv)
  emit(paste0(name, "_lower"), sf$lower)
  emit(paste0(name, "_upper"), sf$upper)
  q <- quantile(sf, 0.5)
  emit(paste0(name, "_median"), na(q$quantile))
  emit(paste0(name, "_mlow"), na(q$lower))
  emit(paste0(name, "_mhigh"), na(q$upper))
}}
for (name in c("twin", "ties", "lung", "wtd")) {{
  d <- get(name)
  terms <- setdiff(names(d), c("time", "event", "w"))
  f <- as.formula(paste("Surv(time, event) ~", paste(terms, collapse = " + ")))
  # non-integer weights: R's default covariance is then the robust one; ours is the model's
  fit <- if (name == "wtd") coxph(f, data = d, ties = "efron", weights = w, robust = FALSE) else
    coxph(f, data = d, ties = "efron")
  band(name, fit, get(paste0(name, "_new")))
}}
# our ridge 0.5 * alpha * ||b||^2 per unit weight is R's ridge(theta = alpha * n, scale = FALSE)
fit <- coxph(Surv(time, event) ~ ridge(age, sex, ecog, theta = {RIDGE} * nrow(lung), scale = FALSE),
             data = lung)
band("ridge", fit, lung_new)
"""


def _design(n: int, seed: int, ceil_times: bool = False) -> pd.DataFrame:
    """A twin cohort as R sees it: the preprocessed covariates x1..xp, time, event."""
    data = datasets.twin(n=n, seed=seed)
    x = build_preprocessor(data.spec).fit_transform(data.X)
    x = pd.DataFrame(np.asarray(x, dtype=float), columns=[f"x{j + 1}" for j in range(x.shape[1])])
    x = x.loc[:, x.std() > 0]
    time = np.ceil(data.y["time"]) if ceil_times else data.y["time"]
    return x.assign(time=time, event=data.y["event"].astype(int))


def _lung() -> pd.DataFrame:
    from lifelines.datasets import load_lung  # the same table as R's survival::lung

    d = load_lung()[["time", "status", "age", "sex", "ph.ecog"]].dropna()
    return pd.DataFrame({"age": d["age"], "sex": d["sex"], "ecog": d["ph.ecog"], "time": d["time"],
                         "event": d["status"].astype(int)}).reset_index(drop=True)


def _fit(d: pd.DataFrame, weights=None, alpha: float = 0.0) -> CoxPH:
    X = d.drop(columns=[c for c in ("time", "event", "w") if c in d])
    return CoxPH(alpha=alpha).fit(X, Surv.from_arrays(d["event"] > 0, d["time"]), sample_weight=weights)


@pytest.fixture(scope="module")
def cases():
    twin = _design(101, 3)
    ties = _design(300, 11, ceil_times=True)
    lung = _lung()
    wtd = _design(200, 5).assign(w=np.random.default_rng(1).uniform(0.3, 3.0, 200))
    out = {}
    for name, d in (("twin", twin), ("ties", ties), ("lung", lung), ("wtd", wtd)):
        new = d.drop(columns=[c for c in ("time", "event", "w") if c in d]).iloc[[0, 7, 19]]
        out[name] = (d, new.reset_index(drop=True))
    out["ridge"] = out["lung"]
    return out


@pytest.mark.slow
@needs_r("survival")
def test_band_and_median_ci_equal_survfit_coxph(cases):
    frames = {}
    for name, (d, new) in cases.items():
        if name != "ridge":
            frames[name], frames[f"{name}_new"] = d, new
    r = run_r(R_SCRIPT, **frames)
    for name, (d, new) in cases.items():
        model = _fit(d, d["w"].to_numpy() if "w" in d else None, alpha=RIDGE if name == "ridge" else 0.0)
        times = r[f"{name}_time"]
        np.testing.assert_allclose(times, model.unique_times_, rtol=0, atol=1e-9)
        surv, low, high = model.predict_survival_ci(new, times)
        k = len(new)
        for ours, key in ((surv, "surv"), (low, "lower"), (high, "upper")):
            theirs = r[f"{name}_{key}"].reshape(k, len(times))  # R's times x patients, column-major
            ok = np.isfinite(theirs)
            np.testing.assert_allclose(ours[ok], theirs[ok], rtol=1e-6, atol=1e-9, err_msg=f"{name} {key}")
        med, med_low, med_high = results.band_medians(model.unique_times_, surv, low, high)
        for ours, key in ((med, "median"), (med_low, "mlow"), (med_high, "mhigh")):
            np.testing.assert_allclose(np.where(np.isnan(ours), np.inf, ours), r[f"{name}_{key}"],
                                       rtol=1e-9, err_msg=f"{name} {key}")


def test_band_contains_the_estimate_and_widens_with_fewer_patients():
    big, small = _design(1000, 4), _design(1000, 4).iloc[:150]
    patient = big.drop(columns=["time", "event"]).iloc[[3]]
    widths = []
    for d in (big, small):
        model = _fit(d)
        s, low, high = model.predict_survival_ci(patient, [6.0, 12.0])
        assert np.all((low <= s) & (s <= high))
        widths.append(high - low)
    assert np.all(widths[1] > widths[0])


class _ChosenRidge(CoxPH):
    """A subclass that chooses its own penalty (as a cross-validated Cox does) and records it in
    `alpha_`, scikit-learn's name for a fitted penalty."""

    def fit(self, X, y, sample_weight=None):
        from ml.stats import coxph

        self.alpha_ = 0.5
        data, x, time, event = self._prepare(X, y, sample_weight)
        beta = coxph.newton_raphson(data, ridge=self.alpha_, tol=1e-10).coef
        self._finish(beta, x, time, event, sample_weight)
        return self


def test_a_subclass_with_its_own_penalty_gets_the_penalised_covariance():
    d = _lung()
    X, y = d[["age", "sex", "ecog"]], Surv.from_arrays(d["event"] > 0, d["time"])
    chosen = _ChosenRidge(alpha=0.0).fit(X, y)
    plain = CoxPH(alpha=0.5).fit(X, y)
    for ours, theirs in zip(chosen.predict_survival_ci(X.head(4), [200.0, 400.0]),
                            plain.predict_survival_ci(X.head(4), [200.0, 400.0]), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-7)


def test_no_delta_band_for_a_fit_short_of_its_optimum():
    d = _lung()
    X, y = d[["age", "sex", "ecog"]], Surv.from_arrays(d["event"] > 0, d["time"])
    with pytest.warns(RuntimeWarning, match="did not converge"):
        model = CoxPH(alpha=0.0, max_iter=1).fit(X, y)
    assert model.curve_variance_ is None
    with pytest.raises(ValueError, match="delta method does not apply"):
        model.predict_survival_ci(X.head(2))


def test_band_covers_the_true_curve_95_percent_of_the_time():
    """Data from a known Cox model (exponential baseline): the 95 % band at 6 and 12 months holds
    the true S(t|x0) in about 95 % of 400 simulated studies of 200 patients (binomial SE 1.1 %)."""
    rng = np.random.default_rng(0)
    beta, rate = np.array([0.7, -0.5, 0.3]), 0.08
    x0, t0 = np.array([[0.5, 1.0, -0.3]]), np.array([6.0, 12.0])
    truth = np.exp(-rate * t0 * np.exp(x0 @ beta))
    hits = np.zeros(2)
    for _ in range(400):
        x = rng.normal(size=(200, 3))
        t = rng.exponential(1 / (rate * np.exp(x @ beta)))
        c = rng.uniform(5, 30, 200)
        model = CoxPH(alpha=0.0).fit(x, Surv.from_arrays(t <= c, np.minimum(t, c)))
        _, low, high = model.predict_survival_ci(x0, t0)
        hits += ((low <= truth) & (truth <= high))[0]
    assert np.all((hits / 400 > 0.92) & (hits / 400 < 0.98)), hits / 400
