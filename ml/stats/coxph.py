"""The weighted Cox partial likelihood: one engine for `ml.stats.cox` and `ml.models.cox`.

With case weights w and ties handled by Efron's method (or Breslow's):

    log PL(b) = sum_j [ sum_{i in D_j} w_i eta_i
                        - wbar_j sum_{l<d_j} log( S0(R_j) - l/d_j S0(D_j) ) ]

with D_j the d_j events at the j-th event time, R_j its risk set, S0(A) = sum_A w e^eta
and wbar_j the mean weight of D_j (R's `coxph` and lifelines' convention). Events with
a zero weight are left out of D_j, so a zero weight is the same as removing the row.
Value, gradient and information (= -Hessian) are exact and cost O(n p^2) per
evaluation: risk-set sums are reverse cumulative sums over the rows sorted by time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RiskSets:
    """Rows sorted by time, with the event-time groups precomputed once per fit."""

    x: np.ndarray
    time: np.ndarray
    w: np.ndarray
    order: np.ndarray       # sorted position -> original row
    ev: np.ndarray          # sorted positions of the events with a positive weight, in time order
    group: np.ndarray       # event-time group of each of those events
    first: np.ndarray       # first sorted row at risk at each event time
    starts: np.ndarray      # start of each group within `ev`
    counts: np.ndarray      # events in each group
    uniq: np.ndarray        # distinct event times
    c: np.ndarray           # Efron fraction l/d_j per event (0 for Breslow)
    wbar: np.ndarray        # mean event weight of the event's group
    total_weight: float

    @property
    def n_events(self) -> int:
        return len(self.ev)


def risk_sets(time, event, x, w, ties: str) -> RiskSets:
    """Sort once and index the event times; `ties` is 'efron' or 'breslow'.

    Callers check that there is at least one event with a positive weight: without one
    the likelihood is constant and there is nothing to fit.
    """
    if ties not in ("efron", "breslow"):
        raise ValueError(f"ties must be 'efron' or 'breslow', got {ties!r}")
    order = np.argsort(time, kind="stable")
    x, time, event, w = x[order], time[order], event[order], w[order]
    ev = np.flatnonzero(event & (w > 0))
    uniq, starts, counts = np.unique(time[ev], return_index=True, return_counts=True)
    group = np.repeat(np.arange(len(uniq)), counts)
    wbar = (np.add.reduceat(w[ev], starts) / counts)[group] if len(ev) else np.zeros(0)
    within = np.arange(len(ev)) - starts[group]
    c = within / counts[group] if ties == "efron" else np.zeros(len(ev))
    first = np.searchsorted(time, uniq, side="left")
    return RiskSets(x=x, time=time, w=w, order=order, ev=ev, group=group, first=first, starts=starts,
                    counts=counts, uniq=uniq, c=c, wbar=wbar, total_weight=float(w.sum()))


@dataclass(frozen=True)
class PartialLikelihood:
    """log PL, its gradient and information (-Hessian) at one beta; residuals if asked."""

    loglik: float
    gradient: np.ndarray
    information: np.ndarray | None
    residuals: np.ndarray | None


def evaluate(rs: RiskSets, beta: np.ndarray, hessian: bool = True,
             residuals: bool = False) -> PartialLikelihood:
    """The weighted log partial likelihood at beta (see the module docstring).

    With `residuals`, also the per-row score residuals U_i in the original row order
    (unweighted; sum_i w_i U_i is the gradient), for the robust sandwich variance.
    """
    x, w, ev, wbar = rs.x, rs.w, rs.ev, rs.wbar
    eta, r, v, den, num = _efron_sums(rs, beta)
    loglik = float(np.sum(w[ev] * eta[ev]) - np.sum(wbar * np.log(den)))
    grad = (w[ev, None] * x[ev]).sum(0) - ((wbar / den)[:, None] * num).sum(0)
    info = _information(rs, v, den, num) if hessian else None
    resid = _score_residuals(rs, r, den, num / den[:, None]) if residuals else None
    return PartialLikelihood(loglik=loglik, gradient=grad, information=info, residuals=resid)


def _efron_sums(rs: RiskSets, beta: np.ndarray):
    """Per event slot, the Efron risk-set sums S0 - l/d S0(D) and S1 - l/d S1(D) at beta.

    Also returns the shifted linear predictor eta, r = exp(eta) and v = w r per sorted row.
    """
    x, w, ev, group, c = rs.x, rs.w, rs.ev, rs.group, rs.c
    eta = x @ beta
    eta = eta - eta.max()  # log PL is invariant to a shift of eta; this keeps exp() finite
    r = np.exp(eta)
    v = w * r
    s0 = np.cumsum(v[::-1])[::-1][rs.first]
    s1 = np.cumsum((v[:, None] * x)[::-1], axis=0)[::-1][rs.first]
    s0d = np.add.reduceat(v[ev], rs.starts)
    s1d = np.add.reduceat(v[ev, None] * x[ev], rs.starts, axis=0)
    den = s0[group] - c * s0d[group]
    num = s1[group] - c[:, None] * s1d[group]
    return eta, r, v, den, num


def schoenfeld_residuals(rs: RiskSets, beta: np.ndarray) -> np.ndarray:
    """Schoenfeld residuals of the events (positive weight), in time order (ties: row order).

    Each is x_i minus the mean, over the Efron slots of its time, of the weighted risk-set
    means of x; unweighted by the event's own weight (lifelines' and R's convention).
    """
    _, _, _, den, num = _efron_sums(rs, beta)
    xbar = num / den[:, None]
    mean_xbar = np.add.reduceat(xbar, rs.starts, axis=0) / rs.counts[:, None]
    return rs.x[rs.ev] - mean_xbar[rs.group]


def _information(rs: RiskSets, v, den, num) -> np.ndarray:
    """sum over event slots of wbar * (risk-set covariance of x), without n x p x p arrays.

    The risk-set second moments sum_i v_i x_i x_i' are regrouped per row: row i enters
    every event time up to its own with weight wbar/den (cum_a), minus its Efron share
    when it is one of the tied events itself.
    """
    x, ev, group = rs.x, rs.ev, rs.group
    a = np.add.reduceat(rs.wbar / den, rs.starts)
    b = np.add.reduceat(rs.wbar * rs.c / den, rs.starts)
    last = np.searchsorted(rs.uniq, rs.time, side="right") - 1
    cum_a = np.concatenate([[0.0], np.cumsum(a)])[last + 1]
    m = num * (np.sqrt(rs.wbar) / den)[:, None]
    return (x.T * (v * cum_a)) @ x - (x[ev].T * (v[ev] * b[group])) @ x[ev] - m.T @ m


def _score_residuals(rs: RiskSets, r, den, xbar) -> np.ndarray:
    """Per-row score residuals U_i = event part - compensator (R's Efron form).

    The event part of an event is x_i minus the mean of the Efron risk-set means at its
    time; the compensator sums, over event times up to t_i, r_i * wbar / den * (x_i - xbar),
    where a row that is one of the tied events counts only with its share (1 - l/d).
    """
    x, ev, group, c = rs.x, rs.ev, rs.group, rs.c
    a = rs.wbar / den
    b = a[:, None] * xbar
    cum_a = np.cumsum(np.add.reduceat(a, rs.starts))
    cum_b = np.cumsum(np.add.reduceat(b, rs.starts, axis=0), axis=0)
    tie_a = np.add.reduceat(c * a, rs.starts)
    tie_b = np.add.reduceat(c[:, None] * b, rs.starts, axis=0)
    last = np.searchsorted(rs.uniq, rs.time, side="right") - 1
    seen = last >= 0
    comp = np.zeros_like(x)
    comp[seen] = r[seen, None] * (x[seen] * cum_a[last[seen], None] - cum_b[last[seen]])
    comp[ev] -= r[ev, None] * (x[ev] * tie_a[group, None] - tie_b[group])
    mean_xbar = np.add.reduceat(xbar, rs.starts, axis=0) / rs.counts[:, None]
    resid = -comp
    resid[ev] += x[ev] - mean_xbar[group]
    out = np.empty_like(resid)
    out[rs.order] = resid
    return out


# --- Newton-Raphson -------------------------------------------------------------------

# A stalled objective with Newton steps still this large means a coefficient is running
# off to infinity (monotone likelihood): Newton steps along an exponential tail stay O(1),
# while near a finite maximum they shrink quadratically.
DIVERGING_STEP = 1e-3


@dataclass(frozen=True)
class NewtonResult:
    """The fitted coefficients and why the iterations stopped.

    status: 'converged' (the last step < tol), 'stalled' (the objective stopped improving
    while the steps stayed large: no finite maximum) or 'max_iter'. singular_start: the
    information at b = 0 is exactly singular (a constant, all-zero or duplicated column),
    which a caller without a ridge may want to refuse rather than fit a min-norm answer.
    """

    coef: np.ndarray
    fit: PartialLikelihood
    iterations: int
    status: str
    singular_start: bool


def _exactly_singular(a: np.ndarray) -> bool:
    try:
        np.linalg.solve(a, np.zeros(len(a)))  # LU hits an exact zero pivot
    except np.linalg.LinAlgError:
        return True
    return False


def newton_raphson(rs: RiskSets, ridge: float = 0.0, max_iter: int = 50,
                   tol: float = 1e-9) -> NewtonResult:
    """Minimise -log PL / sum(w) + 0.5 * ridge * ||b||^2 from b = 0, halving steps as needed.

    The per-unit-weight scale (glmnet's) makes `ridge` independent of the weights' scale.
    A 1e-12 ridge on the Newton system (not on the objective) keeps an all-zero column,
    e.g. a level absent from a training fold, at a zero step instead of a singular solve.
    """
    scale = rs.total_weight
    beta = np.zeros(rs.x.shape[1])
    eye = np.eye(len(beta)) * max(ridge, 1e-12)

    def objective(b):
        pl = evaluate(rs, b)
        return -pl.loglik / scale + 0.5 * ridge * b @ b, pl

    f, pl = objective(beta)
    singular_start = _exactly_singular(pl.information)
    status, iterations = "max_iter", 0
    while iterations < max_iter:
        iterations += 1
        grad = -pl.gradient / scale + ridge * beta
        hess = pl.information / scale + eye
        try:
            direction = np.linalg.solve(hess, -grad)
        except np.linalg.LinAlgError:
            direction = np.linalg.lstsq(hess, -grad, rcond=None)[0]
        accepted, t = False, 1.0
        for _ in range(40):
            f_new, pl_new = objective(beta + t * direction)
            if np.isfinite(f_new) and f_new <= f + 1e-12:
                accepted = True
                break
            t /= 2
        if not accepted:
            status = "stalled"
            break
        step = np.max(np.abs(t * direction), initial=0.0)
        beta, f_old, f, pl = beta + t * direction, f, f_new, pl_new
        if step < tol:
            status = "converged"
            break
        if f_old - f < 1e-12 * max(1.0, abs(f)) and step >= DIVERGING_STEP:
            status = "stalled"
            break
    return NewtonResult(coef=beta, fit=pl, iterations=iterations, status=status,
                        singular_start=singular_start)
