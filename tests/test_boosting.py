"""fastbce.boosting: LightGBM and XGBoost trained with the fastbce objectives give the models of
their built-in binary objectives (within 1e-6), weights come from the Dataset / DMatrix, the
focal objective is fastbce.focal_bce_grad_hess with its Hessian floored, the metrics are
fastbce.bce / focal_bce, and bad arguments or a missing library raise naming them."""

import pickle
import sys

import numpy as np
import pytest

import fastbce

lgb = pytest.importorskip("lightgbm")
xgb = pytest.importorskip("xgboost")
boosting = pytest.importorskip("fastbce.boosting")

N = 2000
ROUNDS = 30
LGB_PARAMS = {"num_leaves": 15, "learning_rate": 0.1, "verbose": -1, "num_threads": 1,
              "deterministic": True, "force_row_wise": True, "seed": 0}
XGB_PARAMS = {"tree_method": "hist", "max_depth": 4, "eta": 0.1, "nthread": 1, "seed": 0}


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 5))
    y = (rng.random(N) < _sigmoid(X @ np.array([1.5, -1.0, 0.5, 0.0, 2.0]) - 1)).astype(np.float64)
    return X, y, rng.uniform(0.2, 3.0, N)


# --- model equivalence with the built-in binary objectives ------------------------------------

@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_lightgbm_bce_is_binary_objective(data, weighted):
    """The init score the user passes is obj.init_score(y, w), LightGBM's boost_from_average value;
    the custom model's raw prediction does not include it, so it is added back."""
    X, y, w = data
    w = w if weighted else None
    objective = boosting.lightgbm_objective()
    b = objective.init_score(y, w)
    reference = lgb.train({**LGB_PARAMS, "objective": "binary"}, lgb.Dataset(X, y, weight=w), ROUNDS)
    custom = lgb.train({**LGB_PARAMS, "objective": objective},
                       lgb.Dataset(X, y, weight=w, init_score=np.full(N, b)), ROUNDS)
    raw = custom.predict(X, raw_score=True) + b
    np.testing.assert_allclose(raw, reference.predict(X, raw_score=True), rtol=0, atol=1e-6)
    np.testing.assert_allclose(_sigmoid(raw), reference.predict(X), rtol=0, atol=1e-6)
    # the weights were used: the unweighted model is another one
    if weighted:
        unweighted = lgb.train({**LGB_PARAMS, "objective": "binary"}, lgb.Dataset(X, y), ROUNDS)
        assert np.abs(unweighted.predict(X, raw_score=True) - raw).max() > 1e-2


def test_lightgbm_pos_weight_is_scale_pos_weight(data):
    X, y, _ = data
    params = {**LGB_PARAMS, "boost_from_average": False}
    reference = lgb.train({**params, "objective": "binary", "scale_pos_weight": 3.0}, lgb.Dataset(X, y), ROUNDS)
    custom = lgb.train({**params, "objective": boosting.lightgbm_objective(pos_weight=3.0)},
                       lgb.Dataset(X, y), ROUNDS)
    np.testing.assert_allclose(custom.predict(X, raw_score=True), reference.predict(X, raw_score=True),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_xgboost_bce_is_binary_logistic(data, weighted):
    """xgboost.train starts a custom objective at base_score taken as a raw score: pass b there;
    binary:logistic takes base_score as a probability, σ(b)."""
    X, y, w = data
    w = w if weighted else None
    objective = boosting.xgboost_objective()
    b = objective.init_score(y, w)
    reference = xgb.train({**XGB_PARAMS, "objective": "binary:logistic", "base_score": _sigmoid(b)},
                          xgb.DMatrix(X, y, weight=w), ROUNDS)
    custom = xgb.train({**XGB_PARAMS, "base_score": b}, xgb.DMatrix(X, y, weight=w), ROUNDS, obj=objective)
    features = xgb.DMatrix(X)
    raw = custom.predict(features, output_margin=True)
    np.testing.assert_allclose(raw, reference.predict(features, output_margin=True), rtol=0, atol=1e-6)
    np.testing.assert_allclose(_sigmoid(raw.astype(np.float64)), reference.predict(features), rtol=0, atol=1e-6)
    if weighted:
        unweighted = xgb.train({**XGB_PARAMS, "base_score": b}, xgb.DMatrix(X, y), ROUNDS, obj=objective)
        assert np.abs(unweighted.predict(features, output_margin=True) - raw).max() > 1e-2


def test_sklearn_estimators(data):
    X, y, w = data
    b = boosting.lightgbm_objective().init_score(y, w)
    options = {"n_estimators": ROUNDS, "num_leaves": 15, "n_jobs": 1, "verbose": -1, "deterministic": True,
               "force_row_wise": True}
    reference = lgb.LGBMClassifier(objective="binary", **options).fit(X, y, sample_weight=w)
    custom = lgb.LGBMClassifier(objective=boosting.lightgbm_objective(), **options)
    custom.fit(X, y, sample_weight=w, init_score=np.full(N, b))
    np.testing.assert_allclose(custom.predict(X, raw_score=True) + b, reference.predict(X, raw_score=True),
                               rtol=0, atol=1e-6)

    p = float(_sigmoid(b))  # XGBClassifier keeps binary:logistic: base_score is a probability
    options = {"n_estimators": ROUNDS, "max_depth": 4, "n_jobs": 1, "base_score": p}
    reference = xgb.XGBClassifier(**options).fit(X, y, sample_weight=w)
    custom = xgb.XGBClassifier(objective=boosting.xgboost_objective(), **options).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(custom.predict_proba(X), reference.predict_proba(X), rtol=0, atol=1e-6)
    assert (custom.predict(X) == reference.predict(X)).all()


# --- the gradient and Hessian -----------------------------------------------------------------

def _focal_oracle(y, x, gamma, alpha):
    """The README formulas for 0/1 labels, float64: g = s·α_t·q^γ·(γ·p·log p - q),
    h = α_t·p·q^γ·(q·(1 + 2γ + γ·log p) - γ²·p·log p), p = p_t, q = 1 - p_t, s = 2y - 1."""
    s = 2 * y - 1
    p, q, log_p = _sigmoid(s * x), _sigmoid(-s * x), -np.logaddexp(0, -s * x)
    a = 1.0 if alpha is None else np.where(y == 1, alpha, 1 - alpha)
    g = s * a * q**gamma * (gamma * p * log_p - q)
    h = a * p * q**gamma * (q * (1 + 2 * gamma + gamma * log_p) - gamma**2 * p * log_p)
    return g, h


@pytest.mark.parametrize("gamma, alpha", [(0.0, None), (0.5, 0.25), (2.0, None), (5.0, 0.75)])
def test_focal_objective_is_focal_grad_hess(data, gamma, alpha):
    X, y, w = data
    rng = np.random.default_rng(1)
    preds = rng.normal(0, 4, N)  # wide enough for p_t ≪ 1, where the focal Hessian is negative
    preds_before = preds.copy()
    objective = boosting.lightgbm_objective("focal", gamma=gamma, alpha=alpha)
    train = lgb.Dataset(X, y, weight=w).construct()
    grad, hess = objective(preds, train)
    np.testing.assert_array_equal(preds, preds_before)
    w = train.get_weight()  # LightGBM keeps weights in float32
    assert w.dtype == np.float32
    expected_grad, expected_hess = fastbce.focal_bce_grad_hess(y, preds, gamma=gamma, alpha=alpha, sample_weight=w)
    np.testing.assert_array_equal(grad, expected_grad)
    np.testing.assert_array_equal(hess, np.maximum(expected_hess, 1e-16))
    # the formulas, and where the Hessian is negative it is floored
    oracle_grad, oracle_hess = _focal_oracle(y, preds, gamma, alpha)
    np.testing.assert_allclose(grad, w * oracle_grad, rtol=1e-10, atol=1e-300)
    negative = oracle_hess < 0
    assert negative.any() == (gamma > 0)
    assert (hess[negative] == 1e-16).all()
    np.testing.assert_allclose(hess, np.maximum(w * oracle_hess, 1e-16), rtol=1e-9, atol=0)
    # central differences of fastbce's own loss
    step = 1e-5

    def summed(x):
        return fastbce.focal_bce(y, x, gamma=gamma, alpha=alpha, from_logits=True, sample_weight=w,
                                 reduction="none")

    def gradient(x):
        return fastbce.focal_bce_grad(y, x, gamma=gamma, alpha=alpha, from_logits=True, sample_weight=w,
                                      reduction="sum")

    np.testing.assert_allclose(grad, (summed(preds + step) - summed(preds - step)) / (2 * step),
                               rtol=1e-5, atol=1e-8)
    numeric_hess = (gradient(preds + step) - gradient(preds - step)) / (2 * step)
    np.testing.assert_allclose(hess[~negative], numeric_hess[~negative], rtol=1e-5, atol=1e-8)


def test_focal_objective_trains(data):
    X, y, w = data
    objective = boosting.lightgbm_objective("focal", gamma=2.0, alpha=0.25)
    metric = boosting.lightgbm_metric("focal", gamma=2.0, alpha=0.25)
    b = objective.init_score(y, w)
    train = lgb.Dataset(X, y, weight=w, init_score=np.full(N, b)).construct()
    w = train.get_weight()
    record = {}
    booster = lgb.train({**LGB_PARAMS, "objective": objective, "metric": "None"}, train, ROUNDS,
                        valid_sets=[train], valid_names=["train"], feval=metric,
                        callbacks=[lgb.record_evaluation(record)])
    losses = record["train"]["focal_bce"]
    assert losses[-1] < 0.8 * losses[0]
    start = fastbce.focal_bce(y, np.full(N, b), gamma=2.0, alpha=0.25, from_logits=True, sample_weight=w)
    assert losses[0] < start
    final = booster.predict(X, raw_score=True) + b
    assert losses[-1] == fastbce.focal_bce(y, final, gamma=2.0, alpha=0.25, from_logits=True, sample_weight=w)


def test_xgboost_multilabel_focal_and_weights(data):
    X, y, w = data
    Y = np.stack([y, 1 - y, (X[:, 1] > 0.5)], axis=1).astype(np.float64)
    objective = boosting.xgboost_objective("focal", gamma=1.5, pos_weight=[1.0, 2.0, 0.5])
    b = objective.init_score(Y, w)
    assert b.shape == (3,)
    train = xgb.DMatrix(X, Y, weight=w, base_margin=np.tile(b, (N, 1)))
    preds = np.random.default_rng(2).normal(0, 2, (N, 3)).astype(np.float32)
    grad, hess = objective(preds, train)
    w = train.get_weight()
    expected = fastbce.focal_bce_grad_hess(Y, preds, gamma=1.5, pos_weight=[1.0, 2.0, 0.5], sample_weight=w[:, None])
    np.testing.assert_array_equal(grad, expected[0])
    np.testing.assert_array_equal(hess, np.maximum(expected[1], np.float32(1e-16)))
    assert grad.dtype == hess.dtype == np.float32
    metric = boosting.xgboost_metric("focal", gamma=1.5, pos_weight=[1.0, 2.0, 0.5])
    record = {}
    booster = xgb.train({**XGB_PARAMS, "multi_strategy": "one_output_per_tree"}, train, ROUNDS, obj=objective,
                        custom_metric=metric, evals=[(train, "train")], evals_result=record, verbose_eval=False)
    losses = record["train"]["focal_bce"]
    assert losses[-1] < 0.8 * losses[0]
    final = booster.predict(train, output_margin=True)
    assert losses[-1] == pytest.approx(
        fastbce.focal_bce(Y, final, gamma=1.5, pos_weight=[1.0, 2.0, 0.5], from_logits=True,
                          sample_weight=w[:, None]), abs=5e-6)  # XGBoost records it with 5 decimals


@pytest.mark.parametrize("library", ["lightgbm", "xgboost"])
def test_multiclass_raises(data, library):
    X, y, _ = data
    classes = (X[:, 0] > 0) + (X[:, 1] > 0)
    with pytest.raises(ValueError, match="multiclass"):
        if library == "lightgbm":
            lgb.train({**LGB_PARAMS, "objective": boosting.lightgbm_objective(), "num_class": 3},
                      lgb.Dataset(X, classes), 1)
        else:
            xgb.train({**XGB_PARAMS, "num_class": 3}, xgb.DMatrix(X, classes), 1, obj=boosting.xgboost_objective())


# --- metrics, initial scores ------------------------------------------------------------------

def test_metrics_equal_fastbce(data):
    X, y, w = data
    x = np.random.default_rng(3).normal(0, 2, N)
    train = lgb.Dataset(X, y, weight=w).construct()
    w = train.get_weight()  # float32, as XGBoost keeps them too
    expected = fastbce.bce(y, x, from_logits=True, sample_weight=w)
    assert boosting.lightgbm_metric()(x, train) == ("bce", expected, False)
    assert boosting.lightgbm_metric()(y, x, w) == ("bce", expected, False)
    assert boosting.xgboost_metric()(x, xgb.DMatrix(X, y, weight=w)) == ("bce", expected)
    assert boosting.xgboost_metric()(y, x, sample_weight=w) == expected
    p = _sigmoid(x)
    assert boosting.lightgbm_metric(from_logits=False)(y, p)[1] == fastbce.bce(y, p)
    focal = boosting.xgboost_metric("focal", gamma=3.0, alpha=0.4)
    assert focal.__name__ == "focal_bce"
    assert focal(y, x) == fastbce.focal_bce(y, x, gamma=3.0, alpha=0.4, from_logits=True)
    # LightGBM's own logloss of a built-in model equals the metric on its probabilities
    record = {}
    lgb.train({**LGB_PARAMS, "objective": "binary", "metric": "binary_logloss"}, train, 5, valid_sets=[train],
              valid_names=["t"], feval=boosting.lightgbm_metric(from_logits=False),
              callbacks=[lgb.record_evaluation(record)])
    np.testing.assert_allclose(record["t"]["bce"], record["t"]["binary_logloss"], rtol=1e-9)


@pytest.mark.parametrize("loss, options", [("bce", {}), ("bce", {"pos_weight": 2.5, "label_smoothing": 0.1}),
                                           ("focal", {"gamma": 2.0, "alpha": 0.25}), ("focal", {"gamma": 0.5})])
def test_init_score_zeroes_the_summed_gradient(data, loss, options):
    _, y, w = data
    b = boosting.xgboost_objective(loss, **options).init_score(y, w)
    function = fastbce.focal_bce_grad if loss == "focal" else fastbce.bce_grad
    slope = function(y, np.full(N, b), from_logits=True, sample_weight=w, reduction="sum", **options).sum()
    assert abs(slope) < 1e-9 * w.sum()
    if loss == "bce" and not options:
        assert b == pytest.approx(np.log(np.average(y, weights=w) / (1 - np.average(y, weights=w))), rel=1e-12)


def test_init_score_bounds():
    bound = np.log((1 - 1e-15) / 1e-15)
    for loss in ("bce", "focal"):
        objective = boosting.lightgbm_objective(loss)
        assert objective.init_score(np.zeros(10)) == pytest.approx(-bound)
        assert objective.init_score(np.ones(10)) == pytest.approx(bound)


@pytest.mark.parametrize("loss", ["bce", "focal"])
def test_init_score_bad_input(loss):
    objective = boosting.lightgbm_objective(loss)
    with pytest.raises(ValueError, match="y_true"):
        objective.init_score(np.array([0.0, 2.0]))
    with pytest.raises(ValueError, match="sample_weight"):
        objective.init_score(np.array([0.0, 1.0]), np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="sample_weight"):
        objective.init_score(np.array([0.0, 1.0]), np.array([1.0, 2.0, 3.0]))


def test_objectives_pickle_and_clone():
    from sklearn.base import clone

    objective = boosting.lightgbm_objective("focal", gamma=1.0, alpha=0.3)
    again = pickle.loads(pickle.dumps(objective))
    assert repr(again) == repr(objective) == "LightGBMObjective(loss='focal', gamma=1.0, alpha=0.3)"
    assert repr(clone(lgb.LGBMClassifier(objective=objective)).objective) == repr(objective)


# --- bad arguments and a missing library ------------------------------------------------------

FACTORIES = ["lightgbm_objective", "xgboost_objective", "lightgbm_metric", "xgboost_metric"]
BAD = [
    ({"loss": "mse"}, ValueError, "loss"),
    ({"loss": "focal", "gamma": -1.0}, ValueError, "gamma"),
    ({"loss": "focal", "gamma": float("nan")}, ValueError, "gamma"),
    ({"loss": "focal", "gamma": "2"}, TypeError, "gamma"),
    ({"loss": "focal", "alpha": 1.5}, ValueError, "alpha"),
    ({"loss": "bce", "alpha": 0.25}, ValueError, "alpha"),
    ({"loss": "bce", "gamma": 3.0}, ValueError, "gamma"),
    ({"pos_weight": -1.0}, ValueError, "pos_weight"),
    ({"pos_weight": [[1.0]]}, ValueError, "pos_weight"),
    ({"label_smoothing": 2.0}, ValueError, "label_smoothing"),
    ({"n_threads": 0}, ValueError, "n_threads"),
    ({"backend": "gpu"}, ValueError, "backend"),
]


@pytest.mark.parametrize("factory", FACTORIES)
@pytest.mark.parametrize("options, error, name", BAD, ids=[f"{o}" for o, _, _ in BAD])
def test_bad_arguments_are_named(factory, options, error, name):
    with pytest.raises(error, match=name):
        getattr(boosting, factory)(**options)


@pytest.mark.parametrize("factory", FACTORIES)
def test_bad_factory_specific_arguments(factory):
    options = ({"hess_floor": -1.0}, {"hess_floor": float("inf")}) if "objective" in factory else (
        {"from_logits": "yes"},)
    for bad in options:
        with pytest.raises((ValueError, TypeError), match=next(iter(bad))):
            getattr(boosting, factory)(**bad)


@pytest.mark.parametrize("factory, module, package", [
    ("lightgbm_objective", "lightgbm", "lightgbm"), ("lightgbm_metric", "lightgbm", "lightgbm"),
    ("xgboost_objective", "xgboost", "xgboost-cpu"), ("xgboost_metric", "xgboost", "xgboost-cpu")])
def test_missing_library_names_the_extra(monkeypatch, factory, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(ImportError, match=rf"{package} >= .*fastbce\[boosting\]"):
        getattr(boosting, factory)()


@pytest.mark.parametrize("factory, module, version", [("lightgbm_objective", lgb, "3.3.5"),
                                                      ("xgboost_metric", xgb, "2.0.3")])
def test_old_library_version_raises(monkeypatch, factory, module, version):
    """Older versions handle sample weights of scikit-learn-API objectives otherwise."""
    monkeypatch.setattr(module, "__version__", version)
    with pytest.raises(ImportError, match=f"found {version}"):
        getattr(boosting, factory)()
