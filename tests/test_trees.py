"""Tree ensembles from ONNX: the trees read back, exact TreeSHAP against shap.TreeExplainer, and `audit run` on each family."""

import json
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("skl2onnx")


from audit.store import Store  # noqa: E402
from audit.models.trees import TreeShap, _path_games, _shapley_weights, explained_scores, find_tree_node, read_trees  # noqa: E402


def _skl(model, x):
    from skl2onnx import to_onnx

    return to_onnx(model, x[:1], options={"zipmap": False})


def _onnxml(model, x, kind):
    pytest.importorskip("onnxmltools", reason="onnxmltools (test extra) converts XGBoost and LightGBM models")
    from onnxmltools import convert_lightgbm, convert_xgboost
    from onnxmltools.convert.common.data_types import FloatTensorType

    types = [("input", FloatTensorType([None, x.shape[1]]))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "xgboost":
            return convert_xgboost(model, initial_types=types)
        return convert_lightgbm(model, initial_types=types, zipmap=False)


def _families(x, y, n_trees=12, depth=4):
    """(name, fitted model, ONNX proto) for each tree family whose libraries are installed."""
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier

    out = [
        ("random_forest", RandomForestClassifier(n_trees, max_depth=depth, random_state=0).fit(x, y)),
        ("gradient_boosting", GradientBoostingClassifier(n_estimators=n_trees, max_depth=depth - 1, random_state=0).fit(x, y)),
    ]
    protos = [_skl(model, x) for _, model in out]
    try:
        import xgboost

        model = xgboost.XGBClassifier(n_estimators=n_trees, max_depth=depth, random_state=0, n_jobs=1).fit(x, y)
        out.append(("xgboost", model))
        protos.append(_onnxml(model, x, "xgboost"))
    except ImportError:
        pass
    try:
        import lightgbm

        model = lightgbm.LGBMClassifier(n_estimators=n_trees, num_leaves=12, random_state=0, n_jobs=1, verbose=-1).fit(x, y)
        out.append(("lightgbm", model))
        protos.append(_onnxml(model, x, "lightgbm"))
    except ImportError:
        pass
    return [(name, model, proto) for (name, model), proto in zip(out, protos)]


@pytest.fixture(scope="module")
def cancer_families(cancer):
    """Each family fitted once for the module: on all rows (for shap), and small on 300 rows (for `audit run`)."""
    x, y = cancer
    return ({name: (model, proto) for name, model, proto in _families(x, y)},
            {name: proto for name, _, proto in _families(x[:300], y[:300], n_trees=8, depth=3)})


def _onnxruntime_probabilities(proto, x):
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: x})
    return next(o for o in outputs if np.asarray(o).dtype.kind == "f")


# -- the closed form on one path -----------------------------------------------------
def test_path_game_matches_brute_force_shapley_values():
    """The product game's closed form equals Shapley values enumerated over every coalition."""
    from itertools import combinations
    from math import factorial

    rng = np.random.default_rng(0)
    d = 4
    z = rng.uniform(0.1, 0.9, size=(1, d))
    o = rng.integers(0, 2, size=(1, 1, d)).astype(float)

    def value(coalition):
        return np.prod([o[0, 0, j] if j in coalition else z[0, j] for j in range(d)])

    expected = np.zeros(d)
    for i in range(d):
        others = [j for j in range(d) if j != i]
        for size in range(d):
            for subset in combinations(others, size):
                weight = factorial(size) * factorial(d - size - 1) / factorial(d)
                expected[i] += weight * (value(set(subset) | {i}) - value(set(subset)))
    np.testing.assert_allclose(_path_games(z, o)[0, 0], expected, atol=1e-12)
    # The weights of all coalitions of the other players add up to one.
    from math import comb

    assert np.isclose(sum(comb(4, s) * w for s, w in enumerate(_shapley_weights(5))), 1.0)


# -- reading the trees -------------------------------------------------------------------
def test_trees_read_from_the_graph_reproduce_onnxruntime(cancer, iris):
    for x, y in (cancer, iris):
        for name, _, proto in _families(x, y):
            if name == "lightgbm" and len(np.unique(y)) > 2:
                continue
            trees = read_trees(find_tree_node(proto))
            got = trees.outputs(trees.margins(x))
            np.testing.assert_allclose(got, _onnxruntime_probabilities(proto, x), atol=2e-6, err_msg=name)


# -- TreeSHAP against shap.TreeExplainer -------------------------------------------------
def _shap_values(model, reference, x):
    shap = pytest.importorskip("shap", reason="shap (test extra) is the reference TreeSHAP")
    masker = shap.maskers.Independent(reference, max_samples=len(reference))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explainer = shap.TreeExplainer(model, data=masker, feature_perturbation="tree_path_dependent")
        values = np.asarray(explainer.shap_values(x, check_additivity=False))
    return values, np.atleast_1d(explainer.expected_value)


@pytest.mark.parametrize("family", ["random_forest", "gradient_boosting", "xgboost", "lightgbm"])
def test_treeshap_equals_shap_tree_explainer(cancer, cancer_families, family):
    x, y = cancer
    found = cancer_families[0]
    if family not in found:
        pytest.skip(f"{family} is not installed (test extra)")
    model, proto = found[family]
    reference, rows = x[::3], x[:200]
    ours = TreeShap(read_trees(find_tree_node(proto)), reference)
    phi = ours.shap_values(rows)
    theirs, their_expected = _shap_values(model, reference, rows)
    # Binary models: ours explains the positive class's score; shap gives both
    # classes for a forest (probabilities) and one margin for boosting.
    theirs = theirs[:, :, 1] if theirs.ndim == 3 else theirs
    np.testing.assert_allclose(phi[:, :, 0], theirs, atol=1e-5)
    np.testing.assert_allclose(ours.expected[0], their_expected[-1], atol=1e-5)
    # Additivity: attributions add up to the margin minus the expected value.
    np.testing.assert_allclose(phi.sum(axis=1) + ours.expected, ours.trees.margins(rows), atol=1e-5)


def test_treeshap_multiclass_forest_equals_shap(iris):
    from sklearn.ensemble import RandomForestClassifier

    x, y = iris
    forest = RandomForestClassifier(15, random_state=0).fit(x, y)  # unlimited depth: deep paths
    ours = TreeShap(read_trees(find_tree_node(_skl(forest, x))), x)
    theirs, expected = _shap_values(forest, x, x)
    np.testing.assert_allclose(ours.shap_values(x), theirs, atol=1e-5)
    np.testing.assert_allclose(ours.expected, expected, atol=1e-5)


def test_row_by_row_mode_equals_the_tables(cancer):
    """Paths too long for a table are computed per row; both give the same values."""
    from sklearn.ensemble import RandomForestClassifier

    x, y = cancer
    forest = RandomForestClassifier(5, max_depth=8, random_state=0).fit(x, y)
    trees = read_trees(find_tree_node(_skl(forest, x)))
    tabled = TreeShap(trees, x).shap_values(x[:50])
    direct = TreeShap(trees, x, table_limit=1).shap_values(x[:50])
    np.testing.assert_allclose(direct, tabled, atol=1e-6)


def test_boosted_multiclass_softmax_adds_up_per_class(iris):
    """GradientBoosting on three classes: one margin per class (before SOFTMAX), each adding up."""
    from sklearn.ensemble import GradientBoostingClassifier

    x, y = iris
    model = GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=0).fit(x, y)
    trees = read_trees(find_tree_node(_skl(model, x)))
    assert trees.post_transform == "SOFTMAX" and "SOFTMAX" in trees.explained_space()
    explainer = TreeShap(trees, x)
    phi = explainer.shap_values(x)
    np.testing.assert_allclose(phi.sum(axis=1) + explainer.expected, trees.margins(x), atol=1e-5)
    # The margins are sklearn's decision function up to a constant per row (softmax is shift-invariant).
    gap = trees.margins(x) - model.decision_function(x)
    np.testing.assert_allclose(gap - gap[:, :1], 0, atol=1e-4)


def test_binary_single_score_negative_class_is_the_negation(cancer):
    from sklearn.ensemble import GradientBoostingClassifier

    x, y = cancer
    trees = read_trees(find_tree_node(_skl(GradientBoostingClassifier(n_estimators=5, random_state=0).fit(x, y), x)))
    assert trees.single_score and trees.post_transform == "LOGISTIC"
    explainer = TreeShap(trees, x)
    phi = explainer.shap_values(x[:4])
    maps, expected = explained_scores(trees, phi, explainer.expected, np.array([0, 1, 0, 1]))
    np.testing.assert_allclose(maps[0], -phi[0, :, 0])
    np.testing.assert_allclose(maps[1], phi[1, :, 0])
    assert expected[0] == -expected[1]


def test_regressor_forest_equals_shap_and_reads_as_a_binary_score(cancer):
    from sklearn.ensemble import RandomForestRegressor
    from skl2onnx import to_onnx

    x, y = cancer
    forest = RandomForestRegressor(10, max_depth=5, random_state=0).fit(x, y.astype(float))
    trees = read_trees(find_tree_node(to_onnx(forest, x[:1])))
    assert trees.op == "TreeEnsembleRegressor" and trees.n_outputs == 1
    np.testing.assert_allclose(trees.margins(x)[:, 0], forest.predict(x), atol=1e-5)
    explainer = TreeShap(trees, x[::2])
    phi = explainer.shap_values(x[:100])
    theirs, expected = _shap_values(forest, x[::2], x[:100])
    np.testing.assert_allclose(phi[:, :, 0], theirs, atol=1e-5)
    np.testing.assert_allclose(explainer.expected, expected, atol=1e-5)
    # audit reads one output column as the positive class's score: class 0's map is the negation.
    maps, _ = explained_scores(trees, phi[:2], explainer.expected, np.array([1, 0]))
    np.testing.assert_allclose(maps, [phi[0, :, 0], -phi[1, :, 0]])


def test_trees_behind_preprocessing_are_refused(cancer):
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from audit.models.trees import UnsupportedTrees

    x, y = cancer
    pipeline = make_pipeline(StandardScaler(), RandomForestClassifier(3, max_depth=2, random_state=0)).fit(x, y)
    with pytest.raises(UnsupportedTrees, match="Scaler"):
        find_tree_node(_skl(pipeline, x))


# -- the model and `audit run` --------------------------------------------------------
def test_onnx_model_names_the_trees_and_explains_them(cancer, tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    from audit.models import LoadOptions, load

    x, y = cancer
    forest = RandomForestClassifier(10, max_depth=4, random_state=0).fit(x, y)
    (tmp_path / "rf.onnx").write_bytes(_skl(forest, x).SerializeToString())
    model = load(tmp_path / "rf.onnx", LoadOptions(device="cpu"))
    model.prepare_for(x[:64])
    assert "trees" in model.capabilities and "gradients" not in model.capabilities
    assert "tree ensemble (TreeEnsembleClassifier (10 trees" in model.gradient_reason
    assert "TreeSHAP" in model.describe()["tree_attributions"]
    explainer = model.tree_shap(x)
    assert model.tree_shap() is explainer and model.tree_shap(x) is explainer
    probabilities = model.predict(x[:20])
    phi = explainer.shap_values(x[:20])
    np.testing.assert_allclose(phi[:, :, 0].sum(axis=1) + explainer.expected[0], probabilities[:, 1], atol=1e-5)


@pytest.mark.parametrize("family", ["random_forest", "gradient_boosting", "xgboost", "lightgbm"])
def test_audit_run_on_tree_models(cli, cancer, cancer_families, tmp_path, family):
    x, y = cancer
    found = cancer_families[1]
    if family not in found:
        pytest.skip(f"{family} is not installed (test extra)")
    (tmp_path / "trees.onnx").write_bytes(found[family].SerializeToString())
    np.savez(tmp_path / "data.npz", x=x[300:], y=y[300:])
    code, out, err = cli("run", tmp_path / "trees.onnx", "--data", tmp_path / "data.npz", "-a", "performance", "-a", "attribution.faithfulness",
                         "--set", "attribution.faithfulness.rows=16", "--set", "attribution.faithfulness.rise_masks=50",
                         "--set", "attribution.faithfulness.sobol_designs=8", "--set", "attribution.faithfulness.compare_ig_baselines=false",
                         "--json", "--fail-on", "never")
    assert code == 0, err
    document = json.loads(out)
    faithfulness = next(a for a in document["analyses"] if a["name"] == "attribution.faithfulness")
    assert faithfulness["status"] == "ok", faithfulness
    explainers = {f.get("subject") for f in document["findings"] if f["analysis"] == "attribution.faithfulness"}
    assert "treeshap" in explainers
    store = Store()
    run = store.resolve_run(document["run_id"])
    assert run.model_info["trees"].startswith("TreeEnsembleClassifier")
    assert "TreeSHAP" in run.model_info["tree_attributions"]
    (result,) = [r for r in store.results(run.id) if r.analysis == "attribution.faithfulness"]
    notes = " ".join(result.notes)
    assert "TreeSHAP (exact, path-dependent) explains" in notes
    assert "gradient explainers not run" in notes and "tree ensemble" in notes
    report = open(document["reports"][0], encoding="utf-8").read()
    assert "exact path-dependent TreeSHAP of" in report and "TreeSHAP (exact, path-dependent) explains" in report
