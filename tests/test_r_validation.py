"""Internal validation against R rms: `validate(cph(...), B)` and the smoothed calibration curve.

Data: a 150-patient twin (18 model columns, continuous times) and R's NCCTG `lung` (complete
cases of age, sex, ph.ecog, wt.loss; tied times), each with its outcome administratively
censored between two distinct times near the median. On such an outcome our `calibration_slope_h`
(truncated at h, capped below the last time) is the slope of the outcome on the linear predictor
itself, which is rms's `Slope`; and Harrell's C = Dxy / 2 + 1/2.

- Apparent (index.orig): Harrell C and calibration slope equal rms's to 1e-8.
- Optimism: depends on the resamples (rms draws its own), so compared loosely (slow test).
- Smoothed curve: our 3-knot restricted cubic spline basis equals rms `rcspline.eval`, and the
  observed S(h) on a grid equals R's `coxph(Surv ~ basis, ties = "efron")` curve with the
  Breslow baseline (`survfit(..., ctype = 1)`; rms `survest` would use Efron's baseline, which
  differs at tied times).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import datasets
from ml import models
from ml.evaluation import validation as stats
from ml.evaluation.metrics import cloglog, curves_at, truncate
from ml.evaluation.smooth_calibration import prediction_grid, rcs_basis, smooth_calibration, spline_knots
from ml.models.cox import CoxPH
from tests.r_oracle import needs_r, run_r

HORIZONS = {"h": 1e6}  # capped below the last time: the whole (censored-at-h) follow-up


def _censor_between_times(X: pd.DataFrame, y: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """Outcome censored at the midpoint of the two distinct times around the median."""
    times = np.unique(y["time"])
    i = np.searchsorted(times, np.median(y["time"]))
    h = 0.5 * (times[i] + times[i + 1])
    return X.reset_index(drop=True), truncate(y, h)


def _twin():
    data = datasets.twin(n=150, seed=5)
    X = models.make_pipeline("cox", data.spec)[0].fit_transform(data.X)
    return _censor_between_times(X.set_axis([f"x{j}" for j in range(X.shape[1])], axis=1), data.y)


def _lung():
    from lifelines.datasets import load_lung  # dev extra
    from sksurv.util import Surv

    # lifelines' copy codes status 1 = dead, 0 = censored
    frame = load_lung().dropna(subset=["age", "sex", "ph.ecog", "wt.loss"])
    X = frame[["age", "sex", "ph.ecog", "wt.loss"]].astype(float).set_axis(["x0", "x1", "x2", "x3"], axis=1)
    return _censor_between_times(X, Surv.from_arrays(frame["status"] == 1, frame["time"].astype(float)))


def _fit(X, y):
    return CoxPH(alpha=0.0, tol=1e-12).fit(X, y)


def _frame(X, y) -> pd.DataFrame:
    return X.assign(time=y["time"], event=y["event"].astype(int))


R_VALIDATE = """
f <- as.formula(paste("Surv(time, event) ~", paste(grep("^x", names(d), value = TRUE), collapse = " + ")))
fit <- cph(f, data = d, x = TRUE, y = TRUE, surv = TRUE)
set.seed(2024)
v <- validate(fit, B = {B})
emit("dxy", v["Dxy", c("index.orig", "optimism")])
emit("slope", v["Slope", c("index.orig", "optimism")])
"""


@pytest.fixture(scope="module", params=["twin", "lung"])
def cohort(request):
    return {"twin": _twin, "lung": _lung}[request.param]()


@pytest.mark.slow
@needs_r("rms")
def test_apparent_harrell_c_and_slope_equal_rms_validate(cohort):
    X, y = cohort
    ours = stats.bootstrap_validation(_fit, X, y, horizons=HORIZONS, tau=1e6, n_bootstrap=1).apparent
    r = run_r(R_VALIDATE.format(B=2), packages=("rms",), d=_frame(X, y))
    assert ours["harrell_c"] == pytest.approx(r["dxy"][0] / 2 + 0.5, abs=1e-8)
    assert ours["calibration_slope_h"] == pytest.approx(r["slope"][0], abs=1e-6)


@pytest.mark.slow
@needs_r("rms")
def test_optimism_is_close_to_rms_validate(cohort):
    X, y = cohort
    summary = stats.bootstrap_validation(_fit, X, y, horizons=HORIZONS, tau=1e6, n_bootstrap=200,
                                         seed=7).summary.set_index("metric")
    r = run_r(R_VALIDATE.format(B=200), packages=("rms",), d=_frame(X, y))
    assert summary.loc["harrell_c", "optimism"] == pytest.approx(r["dxy"][1] / 2, abs=0.015)
    assert summary.loc["calibration_slope_h", "optimism"] == pytest.approx(r["slope"][1], abs=0.08)


@pytest.mark.slow
@needs_r("rms")
def test_smoothed_calibration_curve_equals_rms_cph_on_rcs():
    X, y = _twin()
    model = _fit(X, y)
    h = float(np.quantile(y["time"], 0.4))
    s_h = curves_at(model.predict_survival_function(X, return_array=True), model.unique_times_, [h])[:, 0]
    z, grid = cloglog(s_h), prediction_grid(s_h, points=12)
    knots = spline_knots(z)
    yt = truncate(y, h)
    r = run_r("""
k <- as.numeric(K$k)
emit("basis", rcspline.eval(d$z, knots = k, inclx = TRUE))
b <- as.data.frame(rcspline.eval(d$z, knots = k, inclx = TRUE))
fit <- coxph(Surv(d$time, d$event) ~ ., data = b, ties = "efron")
grid <- as.data.frame(rcspline.eval(G$z, knots = k, inclx = TRUE))
emit("surv", summary(survfit(fit, newdata = grid, ctype = 1), times = H$h)$surv)
""", packages=("rms",), d=pd.DataFrame({"z": z, "time": yt["time"], "event": yt["event"].astype(int)}),
              K=pd.DataFrame({"k": knots}), G=pd.DataFrame({"z": cloglog(grid)}), H=pd.DataFrame({"h": [h]}))
    basis = rcs_basis(z, knots)
    assert np.allclose(basis.ravel(order="F"), r["basis"], rtol=1e-10, atol=1e-12)
    assert np.allclose(smooth_calibration(y, s_h, h, grid), r["surv"], rtol=1e-6, atol=1e-8)
