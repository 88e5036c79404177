import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from edgeaffect.errors import EdgeAffectError
from edgeaffect.tasks.metrics import accuracy, ccc, mean_pearson, pearson_per_column


@settings(max_examples=30, deadline=None)
@given(st.integers(3, 60), st.integers(1, 7), st.integers(0, 10_000))
def test_pearson_matches_scipy(n, k, seed):
    rng = np.random.default_rng(seed)
    p, y = rng.normal(size=(n, k)), rng.normal(size=(n, k))
    ours = pearson_per_column(p, y)
    ref = [stats.pearsonr(p[:, j], y[:, j])[0] for j in range(k)]
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    assert abs(mean_pearson(p, y) - np.mean(ref)) < 1e-6


def test_constant_prediction_scores_zero_not_nan():
    y = np.random.default_rng(0).random((20, 7))
    p = np.full((20, 7), 0.3)
    r = pearson_per_column(p, y)
    assert np.all(np.abs(r) < 1e-6) and np.isfinite(r).all()
    p[:, 0] = y[:, 0]
    assert pearson_per_column(p, y)[0] > 0.999


def test_ccc_matches_its_definition_and_accuracy():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=200), rng.normal(size=200) * 0.5 + 0.2
    ref = 2 * np.cov(x, y, bias=True)[0, 1] / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    assert abs(ccc(x, y) - ref) < 1e-9 and abs(ccc(x, x) - 1) < 1e-9
    assert accuracy(np.eye(3)[[0, 1, 2, 1]], np.array([0, 1, 1, 1])) == 0.75


# -- non-finite predictions are refused, naming the metric and the count -----------------------------

def _with_bad(a, n=1, value=np.nan):
    a = np.array(a, np.float64)
    a.flat[:n] = value
    return a


def _metric_calls():
    """(metric name in the error, call with predictions p) for every metric function and task."""
    from edgeaffect.tasks import get_task
    from edgeaffect.tasks.body import binary_average_precision, binary_roc_auc, multilabel_metrics
    from edgeaffect.tasks.expr import macro_f1

    rng = np.random.default_rng(0)
    y7, y8 = rng.random((12, 7)), (rng.random((12, 8)) < 0.5).astype(int)
    cls = np.array([0, 1, 2, 3, -1, 4, 5, 6, 7, 0, 1, -1])            # EXPR: -1 is an unannotated frame
    va = rng.uniform(-1, 1, (3, 4, 2))
    return [
        ("Pearson r", lambda p: pearson_per_column(p, y7), y7.copy()),
        ("Pearson r", lambda p: mean_pearson(p, y7), y7.copy()),
        ("CCC", lambda p: ccc(p, y7[:, 0]), y7[:, 0].copy()),
        ("accuracy", lambda p: accuracy(p, cls.clip(0)), rng.normal(size=(12, 8))),
        ("macro F1", lambda p: macro_f1(p, cls), rng.integers(0, 8, 12).astype(float)),
        ("ROC-AUC", lambda p: binary_roc_auc(y8[:, 0], p), rng.normal(size=12)),
        ("average precision", lambda p: binary_average_precision(y8[:, 0], p), rng.normal(size=12)),
        ("ROC-AUC/AP", lambda p: multilabel_metrics(p, y8), rng.normal(size=(12, 8))),
        ("Pearson r", lambda p: get_task("eri").metrics({"intensities": p}, y7), y7.copy()),
        ("CCC", lambda p: get_task("va").metrics({"valence": p, "arousal": va[..., 1]}, va), va[..., 0].copy()),
        ("macro F1", lambda p: get_task("expr").metrics({"logits": p}, cls), rng.normal(size=(12, 8))),
        ("accuracy", lambda p: get_task("fer2013").metrics({"logits": p}, cls.clip(0) % 7), rng.normal(size=(12, 7))),
        ("accuracy", lambda p: get_task("ravdess").metrics({"logits": p}, cls.clip(0)), rng.normal(size=(12, 8))),
        ("ROC-AUC/AP", lambda p: get_task("body").metrics({"logits": p}, y8), rng.normal(size=(12, 8))),
    ]


@pytest.mark.parametrize("case", range(len(_metric_calls())))
@pytest.mark.parametrize("value,n", [(np.nan, 1), (np.inf, 2), (-np.inf, 3)])
def test_every_metric_refuses_non_finite_predictions(case, value, n):
    name, call, good = _metric_calls()[case]
    call(good)                                                     # finite predictions score
    with pytest.raises(EdgeAffectError, match=rf"^{re.escape(name)}: {n} of {good.size} predicted values are not finite"):
        call(_with_bad(good, n, value))


def test_nan_would_otherwise_rank_as_the_best_score():
    """What the check prevents: ranked, a NaN sorts above every score (scikit-learn raises instead)."""
    from sklearn.metrics import roc_auc_score

    from edgeaffect.tasks.body import _average_ranks

    assert _average_ranks(np.array([0.1, np.nan, 0.9])).argmax() == 1
    with pytest.raises(ValueError):
        roc_auc_score([0, 1, 1], [0.1, np.nan, 0.9])


def test_classification_report_counts_by_hand():
    """3 classes, 6 samples (one unannotated): the confusion matrix and per-class scores written out by hand."""
    from edgeaffect.tasks.metrics import classification_report

    target = np.array([0, 0, 1, 1, 1, -1])
    pred = np.array([0, 1, 1, 1, 0, 2])                    # class 2: never true, predicted only for the -1 sample
    rep = classification_report(np.eye(3)[pred], target, ["a", "b", "c"])
    assert rep["confusion_matrix"]["rows"] == [[1, 1, 0], [1, 2, 0], [0, 0, 0]]
    a, b, c = (rep["per_class"][k] for k in "abc")
    assert (a["precision"], a["recall"], a["support"]) == (0.5, 0.5, 2) and a["f1"] == pytest.approx(0.5)
    assert b["precision"] == pytest.approx(2 / 3) and b["recall"] == pytest.approx(2 / 3) and b["support"] == 3
    assert c["recall"] is None and c["recall_note"] == "class absent from split" and c["f1"] == 0.0


def test_classification_report_agrees_with_the_tasks_macro_f1():
    from edgeaffect.tasks import get_task

    rng = np.random.default_rng(1)
    logits, target = rng.normal(size=(50, 8)), rng.integers(-1, 8, 50)
    task = get_task("expr")
    per = task.details({"logits": logits}, target)["per_class"]
    assert np.mean([r["f1"] for r in per.values()]) == pytest.approx(task.metrics({"logits": logits}, target)["macro_f1"])


def test_multilabel_report_gives_null_with_a_reason_for_a_one_class_label():
    from edgeaffect.tasks import get_task
    from edgeaffect.tasks.body import binary_roc_auc

    rng = np.random.default_rng(2)
    logits, target = rng.normal(size=(12, 8)), (rng.random((12, 8)) > 0.5).astype(float)
    target[:, 0], target[:, 1] = 0, 1
    per = get_task("body").details({"logits": logits}, target)["per_class"]
    first, second, third = list(per.values())[:3]
    assert first["roc_auc"] is None and first["roc_auc_note"] == "class absent from split" and first["ap"] is None
    assert second["roc_auc"] is None and second["roc_auc_note"] == "no negative sample in split" and second["ap"] == 1.0
    assert third["roc_auc"] == pytest.approx(binary_roc_auc(target[:, 2], logits[:, 2]))


def test_regression_reports_per_dimension_match_the_task_metric():
    from edgeaffect.tasks import get_task

    rng = np.random.default_rng(3)
    y = rng.normal(size=(16, 4, 2))
    out = {"valence": y[..., 0] + 0.2 * rng.normal(size=(16, 4)), "arousal": rng.normal(size=(16, 4))}
    va = get_task("va")
    per, m = va.details(out, y)["per_class"], va.metrics(out, y)
    assert per["valence"]["ccc"] == pytest.approx(m["ccc_valence"]) and per["arousal"]["ccc"] == pytest.approx(m["ccc_arousal"])
    eri = get_task("eri")
    p, t = rng.random((10, 7)), rng.random((10, 7))
    per = eri.details({"intensities": p}, t)["per_class"]
    assert [r["pearson"] for r in per.values()] == pytest.approx(list(pearson_per_column(p, t)))
