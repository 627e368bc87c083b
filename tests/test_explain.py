"""SHAP explanations (`ml.explain`): exactness of the tree conversion (against brute-force Shapley
values), additivity for every model family, summaries and the signal check.
The explain run, its figures and the command: test_explain_workflow.py."""

from __future__ import annotations

import json
import math
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
import xgboost
from sksurv.ensemble import GradientBoostingSurvivalAnalysis, RandomSurvivalForest
from sksurv.util import Surv

from features import datasets
from features.pipeline import FeatureSpec
from ml import explain as E
from ml import models

# ------------------------------------------------------------------ a small problem (6 features)


def _small_problem(seed: int = 0, n: int = 160, p: int = 6):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    X[:, 3] = rng.integers(0, 2, n)
    lp = X[:, 0] - 0.7 * X[:, 1] + 0.5 * X[:, 3] + 0.3 * X[:, 0] * X[:, 2]
    t, c = rng.exponential(np.exp(-lp)), rng.exponential(2.0, n)
    y = Surv.from_arrays(event=t <= c, time=np.minimum(t, c) + 1e-3)
    return pd.DataFrame(X, columns=[f"f{j}" for j in range(p)]), y


@pytest.fixture(scope="module")
def small():
    X, y = _small_problem()
    rsf = RandomSurvivalForest(n_estimators=6, max_depth=4, min_samples_leaf=4, max_samples=0.8,
                               max_features=0.7, random_state=1).fit(X, y)
    gbsa = GradientBoostingSurvivalAnalysis(n_estimators=15, max_depth=3, subsample=0.7,
                                            learning_rate=0.2, random_state=1).fit(X, y)
    gbsa_dropout = GradientBoostingSurvivalAnalysis(n_estimators=10, max_depth=2, dropout_rate=0.3,
                                                    learning_rate=0.3, random_state=2).fit(X, y)
    return X, y, {"rsf": rsf, "gbsa": gbsa, "gbsa_dropout": gbsa_dropout}


def _leaf_table(tree_est, X32: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each leaf's output, read off the model's own predictions for training rows in it."""
    table = np.full(tree_est.tree_.node_count, np.nan)
    table[tree_est.apply(X32)] = values
    return table


def _per_tree_outputs(name: str, model, X32: np.ndarray, horizon: float):
    """(tree, leaf table) pairs whose sum over trees is the model's output (model API only)."""
    if name == "rsf":
        k = len(model.estimators_)
        if horizon is None:
            return [(t, _leaf_table(t, X32, t.predict(X32) / k)) for t in model.estimators_]
        idx = np.searchsorted(model.unique_times_, horizon, side="right") - 1
        return [(t, _leaf_table(t, X32, t.predict_survival_function(X32, return_array=True)[:, idx] / k))
                for t in model.estimators_]
    scale = getattr(model, "_scale", np.ones(len(model.estimators_)))
    return [(t, _leaf_table(t, X32, model.learning_rate * scale[m] * t.predict(X32)))
            for m, t in enumerate(model.estimators_[:, 0])]


def _path_dependent_value(tree_est, leaves: np.ndarray, x: np.ndarray, coalition: frozenset) -> float:
    """E[f(x_S, X_rest)] as TreeSHAP defines it: a split on a feature outside S is averaged
    over both children, weighted by their share of the node's training cover."""
    tree = tree_est.tree_
    cover = tree.weighted_n_node_samples

    def rec(node: int) -> float:
        left, right = tree.children_left[node], tree.children_right[node]
        if left < 0:
            return leaves[node]
        if tree.feature[node] in coalition:
            return rec(left if x[tree.feature[node]] <= tree.threshold[node] else right)
        return (cover[left] * rec(left) + cover[right] * rec(right)) / cover[node]

    return rec(0)


def _brute_force_shapley(value, p: int) -> np.ndarray:
    cache: dict[frozenset, float] = {}

    def v(s: frozenset) -> float:
        if s not in cache:
            cache[s] = value(s)
        return cache[s]

    phi = np.zeros(p)
    for j in range(p):
        others = [k for k in range(p) if k != j]
        for size in range(p):
            weight = math.factorial(size) * math.factorial(p - size - 1) / math.factorial(p)
            for s in combinations(others, size):
                phi[j] += weight * (v(frozenset(s) | {j}) - v(frozenset(s)))
    return phi


@pytest.mark.parametrize("name,output", [("rsf", "risk"), ("rsf", "survival"), ("gbsa", "risk"),
                                         ("gbsa_dropout", "risk")])
def test_tree_conversion_equals_brute_force_path_dependent_shapley(small, name, output):
    X, _, fitted = small
    model, horizon = fitted[name], (1.0 if output == "survival" else None)
    X32 = X.to_numpy(np.float32)
    trees = _per_tree_outputs(name, model, X32, horizon)
    expl = E.explain_tree(model, X.iloc[:6], output=output, horizon=horizon or 12.0)
    assert expl.exact
    for i in range(6):
        def value(s, i=i):
            return sum(_path_dependent_value(t, leaves, X32[i], s) for t, leaves in trees)

        full = value(frozenset(range(X.shape[1])))
        assert full == pytest.approx(expl.prediction[i], abs=1e-9)  # brute force reads the model right
        assert value(frozenset()) == pytest.approx(expl.base_value, abs=1e-9)
        np.testing.assert_allclose(expl.values[i], _brute_force_shapley(value, X.shape[1]), atol=1e-9)


def test_interventional_tree_shap_equals_brute_force_on_model_predictions(small):
    X, _, fitted = small
    model, background = fitted["rsf"], X.iloc[100:120]
    expl = E.explain_tree(model, X.iloc[:3], background=background)
    bg = background.to_numpy()
    for i in range(3):
        x = X.to_numpy()[i]

        def value(s, x=x):
            rows = bg.copy()
            rows[:, list(s)] = x[list(s)]
            return float(model.predict(pd.DataFrame(rows, columns=X.columns)).mean())

        # shap's interventional C code sums over background rows with ~1e-8 relative rounding
        scale = float(np.abs(expl.prediction).max())
        np.testing.assert_allclose(expl.values[i], _brute_force_shapley(value, X.shape[1]), rtol=0,
                                   atol=1e-7 * scale)
    assert expl.additivity_error() < 1e-7 * float(np.abs(expl.prediction).max())


def test_low_memory_forest_explains_risk_only_and_horizon_is_checked(small):
    X, y, fitted = small
    lean = RandomSurvivalForest(n_estimators=3, max_depth=3, low_memory=True, random_state=0).fit(X, y)
    assert E.explain_tree(lean, X.iloc[:5]).additivity_error() < 1e-9
    with pytest.raises(ValueError, match="low_memory"):
        E.explain_tree(lean, X.iloc[:5], output="survival")
    with pytest.raises(ValueError, match="beyond the last training time"):
        E.explain_tree(fitted["rsf"], X.iloc[:5], output="survival", horizon=1e6)
    with pytest.raises(ValueError, match="not a sum over trees"):
        E.tree_ensemble_dict(fitted["gbsa"], output="survival")


# ------------------------------------------------------------------ every family of the zoo


@pytest.fixture(scope="module")
def twin_fits():
    data = datasets.twin(n=300, seed=11)
    fitted = {name: models.fit_full(name, data.spec, data.X, data.y, random_state=0,
                                    treatment_column=data.treatment_column)
              for name in models.MODEL_NAMES}
    return data.X, data.spec, fitted


def _survival_api(model, X, horizon):
    times = np.asarray(model.unique_times_)
    index = np.searchsorted(times, horizon, side="right") - 1
    return model.predict_survival_function(X, return_array=True)[:, index]


FAMILIES = ["cox", "iptw_cox", "coxnet", "rsf", "gbsa", "xgb_cox", "xgb_aft"]


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_risk_additivity_every_family_against_the_models_own_output(twin_fits, name):
    X, spec, fitted = twin_fits
    model = fitted[name]
    risk = E.explain(model, X)
    # xgboost computes its margin in float32: its additivity is at float32 precision
    tol = 1e-5 if name.startswith("xgb") else 1e-6
    np.testing.assert_allclose(risk.base_value + risk.values.sum(1), model.predict(X), rtol=0, atol=tol)
    assert risk.exact and risk.values.shape == (len(X), risk.data.shape[1])


@pytest.mark.slow
def test_forest_survival_additivity_is_exact(twin_fits):
    X, spec, fitted = twin_fits
    surv = E.explain(fitted["rsf"], X, output="survival", horizon=12.0)
    np.testing.assert_allclose(surv.base_value + surv.values.sum(1), _survival_api(fitted["rsf"], X, 12.0),
                               rtol=0, atol=1e-9)
    assert surv.exact and surv.output == "S(12)"


@pytest.mark.slow
def test_survival_additivity_every_family_and_permutation_hygiene(twin_fits):
    # one test for everything that runs shap's permutation explainer: its numba kernels
    # compile once per process (~10-40 s on a loaded machine), so keep them in one worker
    X, spec, fitted = twin_fits
    rows = X.iloc[:8]
    for name in FAMILIES:
        surv = E.explain(fitted[name], rows, output="survival", horizon=12.0, background=X, random_state=0)
        np.testing.assert_allclose(surv.base_value + surv.values.sum(1),
                                   _survival_api(fitted[name], rows, 12.0), rtol=0, atol=1e-6)
        assert surv.exact == (name == "rsf"), name  # S(t) is tree-additive only for the forest
    # reproducible with a random_state, and numpy's global generator is left as it was
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    a = E.explain(fitted["cox"], X.iloc[:4], output="survival", background=X, random_state=7)
    assert np.random.random() == expected
    b = E.explain(fitted["cox"], X.iloc[:4], output="survival", background=X, random_state=7)
    np.testing.assert_array_equal(a.values, b.values)


def test_xgb_aft_is_explained_on_the_risk_side(twin_fits):
    X, spec, fitted = twin_fits
    expl = E.explain(fitted["xgb_aft"], X)
    assert expl.scale == "minus log time" and "negated" in expl.method
    final, Xt = E.split_pipeline(fitted["xgb_aft"], X)
    booster = E.unwrap(final)
    margin = booster.predict(xgboost.DMatrix(Xt.to_numpy(np.float32), feature_names=list(Xt.columns)),
                             output_margin=True)  # the predicted log survival time
    np.testing.assert_allclose(expl.prediction, -margin, atol=1e-5)


# ------------------------------------------------------------------ summaries


def _toy_explanation() -> tuple[E.Explanation, FeatureSpec]:
    raw = pd.DataFrame({
        "age": [50.0, 60.0, 70.0, 80.0, 55.0, 65.0],
        "smoking": ["never", "ever", "ever", "never", "ever", "never"],
        "prior_response": ["SD", "CR/PR", "PD", "CR/PR", "SD", "PD"],
    })
    data = pd.DataFrame({
        "age": (raw["age"] - 63) / 10,
        "smoking=ever": (raw["smoking"] == "ever").astype(float),
        "prior_response=CR/PR": (raw["prior_response"] == "CR/PR").astype(float),
        "prior_response=PD": (raw["prior_response"] == "PD").astype(float),
    })
    values = np.column_stack([
        0.01 * (raw["age"] - 63),                           # older -> higher: direction +1
        np.where(raw["smoking"] == "ever", -0.3, 0.2),      # ever lowers
        np.where(raw["prior_response"] == "CR/PR", -0.5, 0.1),
        np.where(raw["prior_response"] == "PD", 0.6, -0.1),
    ])
    spec = FeatureSpec(numeric=("age",), categorical={"smoking": ("never", "ever"),
                                                      "prior_response": ("SD", "CR/PR", "PD")})
    expl = E.Explanation(values=values, base_value=0.0, data=data, prediction=values.sum(1), output="risk",
                         scale="log-hazard", method="toy", exact=True, raw=raw)
    return expl, spec


def test_summary_sums_one_hot_columns_into_one_feature_with_directions():
    expl, spec = _toy_explanation()
    per_feature = E.feature_shap(expl, spec)
    assert list(per_feature.columns) == ["age", "smoking", "prior_response"]
    np.testing.assert_allclose(per_feature["prior_response"], expl.values[:, 2] + expl.values[:, 3])
    summary = E.summarise(expl, spec).set_index("feature")
    assert summary.loc["prior_response", "rank"] == 1 and summary.loc["age", "rank"] == 3
    assert summary.loc["age", "direction"] == 1
    assert summary.loc["smoking", "direction"] == -1
    assert summary.loc["smoking", "direction_by_level"] == {"ever": -1}
    assert summary.loc["prior_response", "direction_by_level"] == {"CR/PR": -1, "PD": 1}
    assert summary.loc["prior_response", "reference"] == "SD"
    # mean SHAP at PD (0.6 + 0.1) minus at SD (0.1 - 0.1)
    assert summary.loc["prior_response", "level_effects"]["PD"] == pytest.approx(0.7)
    # the spec can also be read off the raw table and the one-hot column names
    inferred = E.summarise(expl).set_index("feature")
    assert inferred.loc["prior_response", "direction_by_level"] == {"CR/PR": -1, "PD": 1}


def test_summary_record_is_json_ready():
    expl, spec = _toy_explanation()
    record = E.summary_record(expl, E.summarise(expl, spec))
    back = json.loads(json.dumps(record))
    assert back["features"]["smoking"] == {"mean_abs_shap": pytest.approx(0.25), "rank": 2, "direction": -1,
                                           "direction_by_level": {"ever": -1},
                                           "level_effects": {"ever": pytest.approx(-0.5)},
                                           "reference": "never"}


def test_shap_object_has_one_column_per_feature_coded_by_level():
    expl, spec = _toy_explanation()
    values = E.to_shap(expl, spec)
    assert values.feature_names == ["age", "smoking", "prior_response"]
    np.testing.assert_allclose(values.values, E.feature_shap(expl, spec).to_numpy())
    # colours: numbers as they are, categories as level codes in the spec's order (reference = 0)
    np.testing.assert_array_equal(values.data[:, 2], [0, 1, 2, 1, 0, 2])
    assert list(values.display_data[:2, 1]) == ["never", "ever"]


# ------------------------------------------------------------------ signal check


def _summary(rows):
    return pd.DataFrame([{"feature": f, "mean_abs_shap": m, "rank": i + 1, "direction": d,
                          "direction_by_level": lv} for i, (f, m, d, lv) in enumerate(rows)])


TRUTH = {"treatment=CIA": -0.6, "smoking=ever": -0.55, "prior_response=CR/PR": -0.7,
         "prior_response=PD": 0.4, "age": 0.0, "liver_mets=yes": 0.45}


def test_expected_directions_are_read_from_the_truth():
    assert E.expected_directions(TRUTH) == {"treatment": {"CIA": -1}, "smoking": {"ever": -1},
                                            "prior_response": {"CR/PR": -1, "PD": 1},
                                            "liver_mets": {"yes": 1}}


def test_signal_check_passes_ranks_without_treatment_and_fails_on_rank_or_direction():
    rows = [("treatment", 0.9, -1, {"CIA": -1}), ("liver_mets", 0.8, 1, {"yes": 1}),
            ("prior_response", 0.7, -1, {"CR/PR": -1, "PD": 1}), ("smoking", 0.5, -1, {"ever": -1}),
            ("age", 0.1, 1, {})]
    check = E.signal_check(_summary(rows), TRUTH, model="m", noise=("age",))
    assert check.passed
    assert check.features["smoking"]["rank"] == 3 and check.noise_ranks == {"age": 4}
    wrong = [*rows[:3], ("smoking", 0.5, 1, {"ever": 1}), rows[4]]
    assert not E.signal_check(_summary(wrong), TRUTH).passed
    low = [rows[0], rows[1], rows[2], ("age", 0.6, 1, {}), ("bone_mets", 0.55, 1, {"yes": 1}),
           ("smoking", 0.5, -1, {"ever": -1})]
    check = E.signal_check(_summary(low), TRUTH)
    assert not check.passed and check.features["smoking"]["rank"] == 5
    reversed_truth = {**TRUTH, "smoking=ever": 0.55}
    assert E.signal_check(_summary(wrong), reversed_truth).passed


def test_recovery_table_counts_passes_and_noise_ranks():
    def chk(model, ok, age_rank):
        return E.SignalCheck(model=model, passed=ok, features={"smoking": {"pass": ok}},
                             noise_ranks={"age": age_rank})

    table = E.recovery_table([chk("a", True, 5), chk("a", False, 9), chk("b", True, 2)]).set_index("model")
    assert table.loc["a", "recovery_rate"] == 0.5 and table.loc["b", "recovered"] == 1
    assert table.loc["a", "age_median_rank"] == 7 and table.loc["a", "age_best_rank"] == 5
