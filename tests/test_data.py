"""Data loaders: NPZ, CSV, Parquet, image folders, sampling and value checks."""

import numpy as np
import pytest

from audit.data import DataOptions, load
from audit.errors import AuditError


def test_npz_attributes_and_feature_links(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(30) % 2, sex=np.arange(30) % 2, region=np.array(["north", "south", "<b>"] * 10),
             feature_names=np.array(["income", "sex", "age"]), class_names=np.array(["no", "yes"]), matrix=np.zeros((30, 2)))
    data = load(tmp_path / "d.npz", DataOptions(attributes_from_arrays=True))
    assert sorted(data.attributes) == ["region", "sex"]  # 2-D arrays are not attributes
    assert data.attribute_features == {"sex": 1}
    assert data.class_names == ["no", "yes"] and data.modality == "tabular"
    assert data.attributes["region"][2] == "<b>"
    assert len(data.sha256) == 64


def test_csv_label_names_string_attributes_and_features(tmp_path):
    rows = ["income,sex,age,approved,city"]
    for i in range(12):
        rows.append(f"{i * 1000},{['f', 'm'][i % 2]},{20 + i},{['no', 'yes'][i % 3 == 0]},{['Paris', 'Lyon'][i % 2]}")
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    # Non-numeric attribute columns are grouping columns; numeric ones stay model inputs.
    with pytest.raises(AuditError, match="column 'city' is not numeric"):
        load(tmp_path / "d.csv", DataOptions(label="approved", attributes=["sex"]))
    data = load(tmp_path / "d.csv", DataOptions(label="approved", attributes=["sex", "age"], features=["income", "age"]))
    assert data.feature_names == ["income", "age"] and data.x.shape == (12, 2)
    assert data.class_names == ["no", "yes"] and data.y.tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0]
    assert data.attributes["sex"].tolist()[:2] == ["f", "m"]
    assert data.attribute_features == {"age": 1}


def test_parquet(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({"a": [1.0, 2.0, 3.0], "b": [0.5, 0.1, 0.2], "group": ["x", "y", "x"], "label": [0, 1, 1]})
    pq.write_table(table, tmp_path / "d.parquet")
    data = load(tmp_path / "d.parquet", DataOptions(label="label", attributes=["group"]))
    np.testing.assert_array_equal(data.x, np.array([[1.0, 0.5], [2.0, 0.1], [3.0, 0.2]], np.float32))
    assert data.y.tolist() == [0, 1, 1] and data.attributes["group"].tolist() == ["x", "y", "x"]


def test_image_folder_with_attributes(tmp_path):
    from PIL import Image

    for label, value in (("cat", 0), ("dog", 255)):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((6, 5, 3), value, np.uint8)).save(tmp_path / "imgs" / label / f"{label}{i}.png")
    (tmp_path / "attrs.csv").write_text("file,site\n" + "".join(f"{k}{i}.png,{'A' if i else 'B'}\n" for k in ("cat", "dog") for i in range(3)))
    data = load(tmp_path / "imgs", DataOptions(attributes_file=str(tmp_path / "attrs.csv"), image_size=[4, 4], mean=[0.5] * 3, std=[0.5] * 3))
    assert data.x.shape == (6, 3, 4, 4) and data.modality == "image"
    assert data.class_names == ["cat", "dog"] and data.y.tolist() == [0, 0, 0, 1, 1, 1]
    np.testing.assert_allclose(data.x[0], -1.0)
    np.testing.assert_allclose(data.x[-1], 1.0)
    assert data.attributes["site"].tolist() == ["B", "A", "A", "B", "A", "A"]


def test_sample_is_seeded(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.arange(200, dtype=np.float32).reshape(100, 2), y=np.zeros(100, int))
    first = load(tmp_path / "d.npz", DataOptions(sample=10), seed=1)
    again = load(tmp_path / "d.npz", DataOptions(sample=10), seed=1)
    other = load(tmp_path / "d.npz", DataOptions(sample=10), seed=2)
    assert len(first) == 10 and first.x.tolist() == again.x.tolist() and first.x.tolist() != other.x.tolist()


def test_nan_refused_unless_allowed_and_empty_refused(tmp_path):
    x = np.ones((5, 2), np.float32)
    x[1, 0] = np.inf
    np.savez(tmp_path / "d.npz", x=x)
    with pytest.raises(AuditError, match="1 NaN or infinite value"):
        load(tmp_path / "d.npz")
    assert len(load(tmp_path / "d.npz", DataOptions(allow_nan=True))) == 5
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 2), np.float32))
    with pytest.raises(AuditError, match="no rows"):
        load(tmp_path / "empty.npz")
    np.savez(tmp_path / "floaty.npz", x=np.zeros((3, 2), np.float32), y=np.array([0.0, 0.5, 1.0]))
    with pytest.raises(AuditError, match="whole class indices"):
        load(tmp_path / "floaty.npz")


def test_npz_value_labels_are_json_and_label_coded_attributes(tmp_path):
    import json

    path = tmp_path / "coded.npz"
    sex = np.array([0, 1, 1, 0])
    np.savez(path, x=np.zeros((4, 2), np.float32), sex=sex, region=np.array(["n", "s", "s", "n"]),
             attributes=np.array(["sex", "region"]),
             value_labels=np.array([json.dumps({"sex": {"0": "female", "1": "male"}, "unused": {"1": "x"}})]))
    data = load(path)
    assert data.value_labels == {"sex": {"0": "female", "1": "male"}}  # labels of undeclared arrays dropped
    assert [data.label_of("sex", v) for v in (0, 1, 1.0, 2)] == ["female", "male", "male", "2"]
    assert data.label_of("region", "s") == "s"  # text labels itself
    assert data.describe()["value_labels"] == {"sex": {"0": "female", "1": "male"}}
    assert data.subset(np.array([0, 1])).value_labels == data.value_labels


@pytest.mark.parametrize("value, message", [
    (np.array(["{not json"]), "not valid JSON"),
    (np.array(['["a"]']), "JSON object"),
    (np.array([1, 2]), "string array"),
])
def test_npz_value_labels_refused_when_malformed(tmp_path, value, message):
    path = tmp_path / "bad.npz"
    np.savez(path, x=np.zeros((2, 1), np.float32), sex=np.array([0, 1]), attributes=np.array(["sex"]), value_labels=value)
    with pytest.raises(AuditError, match=message):
        load(path)


def test_demo_credit_data_names_its_sex_codes():
    from pathlib import Path

    data = load(Path(__file__).resolve().parent.parent / "examples" / "demo" / "credit.npz")
    assert data.value_labels["sex"] == {"0": "female", "1": "male"}
