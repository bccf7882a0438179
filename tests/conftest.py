"""Shared fixtures: every test runs in a temporary folder with its own database."""

import os

import pytest


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Keep tests off the user's files and other installed plugins."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUDIT_DB", str(tmp_path / "audit.db"))
    monkeypatch.setenv("AUDIT_LOAD_PLUGINS", os.environ.get("AUDIT_TEST_PLUGINS", "classifier-audit"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    from audit.plugins import reset_plugin_manager

    reset_plugin_manager()
    yield tmp_path
    reset_plugin_manager()


@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    """Tiny seeded models exported to files once per session, with matching data files."""
    import numpy as np
    import torch

    from audit.testing import export_onnx, tiny_cnn, tiny_dataset, tiny_images, tiny_mlp

    folder = tmp_path_factory.mktemp("assets")
    mlp = tiny_mlp(n_features=4, n_classes=2, seed=0)
    data = tiny_dataset(n=200, n_features=4, seed=1)
    # Labels from the model itself keep accuracy high, so exit codes are predictable.
    y = mlp.predict(data.x).argmax(1)
    export_onnx(mlp, folder / "mlp.onnx", data.x)
    torch.jit.save(torch.jit.script(mlp.module), str(folder / "mlp.pt"))
    np.savez(folder / "data.npz", x=data.x, y=y, group=data.attributes["group"], attributes=np.array(["group"]))
    cnn = tiny_cnn(channels=1, size=8, n_classes=3, seed=0)
    images = tiny_images(n=48, channels=1, size=8, n_classes=3, seed=2)
    export_onnx(cnn, folder / "cnn.onnx", images.x)
    np.savez(folder / "images.npz", x=images.x, y=cnn.predict(images.x).argmax(1))

    class Assets:
        path = folder
        mlp_onnx = folder / "mlp.onnx"
        mlp_pt = folder / "mlp.pt"
        data_npz = folder / "data.npz"
        cnn_onnx = folder / "cnn.onnx"
        images_npz = folder / "images.npz"
        mlp_model = mlp
        x = data.x
        labels = y

    return Assets


def run_cli(*args, input=None):
    """Run the CLI in-process the way a shell would; return (exit code, stdout, stderr)."""
    import contextlib
    import io

    from audit.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session, or a skip that says what is missing."""
    import importlib.util

    from _postgres import PostgresServer, find_binaries

    binaries = find_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install postgresql")
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("psycopg is not installed; pip install '.[postgres]'")
    try:
        server = PostgresServer(binaries)
    except KeyError:
        pytest.skip("running as root and there is no `nobody` account to run PostgreSQL as")
    # A server that fails to start with its binaries present is a failure, not a skip.
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A new, empty database on each engine the store supports."""
    if request.param == "sqlite":
        return str(tmp_path / "store.db")
    return request.getfixturevalue("postgres_server").new_database()


# Data sets that ship with scikit-learn, for the tests of models built from them.
@pytest.fixture(scope="module")
def cancer():
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    return x.astype("float32"), y


@pytest.fixture(scope="module")
def iris():
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    return x.astype("float32"), y
