"""Checkpoints are arrays + JSON metadata: a crafted pickle in a run directory is refused, never
run (``fastsample eval``, ``--resume``, ``load_checkpoint``); the format round-trips exactly and
converts to a torch ``state_dict``."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from fastsample import checkpoint
from fastsample.checkpoint import CheckpointError
from fastsample.cli import main
from fastsample.train import load_checkpoint, train
from fastsample.train_config import make_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Evil:
    """Unpickling this writes the marker file (what an attacker's payload would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (eval, (f"open({self.marker!r}, 'w').write('pwned')",))


def _evil_bytes(marker) -> bytes:
    data = pickle.dumps({"runner": _Evil(marker)}, protocol=2)
    # sanity: the payload really runs when unpickled (so the tests below mean something)
    probe = str(marker) + ".probe"
    pickle.loads(pickle.dumps(_Evil(probe), protocol=2))
    assert os.path.exists(probe)
    os.unlink(probe)
    return data


def _short_run(tmp_path, name="run", **over):
    values = dict(total_steps=512 * 4, stop_when_solved=False, eval_every=0, progress=False,
                  eval_episodes=2, run_dir=str(tmp_path / name))
    values.update(over)
    return train(make_config("CartPole-v1", **values), quiet=True)


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    return _short_run(tmp_path_factory.mktemp("good"))


def _crafted_run(tmp_path, good_run, where):
    """A copy of a real run directory with a pickle payload at ``where``."""
    import shutil

    run = tmp_path / "crafted"
    shutil.copytree(good_run["run_dir"], run)
    marker = tmp_path / "marker"
    payload = _evil_bytes(marker)
    if where == "npz":
        (run / "checkpoints" / "latest.npz").write_bytes(payload)
    elif where == "legacy":
        (run / "checkpoints" / "latest.npz").unlink()
        (run / "checkpoints" / "latest.pt").write_bytes(payload)
    elif where == "npz_member":  # a valid zip whose array entry is a pickled object array
        import io
        import zipfile

        npy = io.BytesIO()
        np.lib.format.write_array(npy, np.array([_Evil(marker)], dtype=object), allow_pickle=True)
        src = run / "checkpoints" / "latest.npz"
        with zipfile.ZipFile(src) as z:
            entries = {n: z.read(n) for n in z.namelist()}
        meta = json.loads(np.lib.format.read_array(io.BytesIO(entries["__meta__.npy"])).tobytes())
        first = meta["state"]["runner"]["model"]
        name = next(iter(first.values()))["__array__"]
        entries[f"{name}.npy"] = npy.getvalue()
        with zipfile.ZipFile(src, "w") as z:
            for n, data in entries.items():
                z.writestr(n, data)
    elif where == "config":
        (run / "config.json").write_bytes(payload)
    else:
        raise AssertionError(where)
    return run, marker


WHERE = ["npz", "legacy", "npz_member", "config"]


@pytest.mark.parametrize("where", WHERE)
def test_eval_refuses_crafted_pickle(tmp_path, good_run, where, capsys):
    run, marker = _crafted_run(tmp_path, good_run, where)
    rc = main(["eval", str(run), "--episodes", "2"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "refused" in err or "no longer read" in err, err
    if where == "legacy":
        assert "old torch.save (pickle) format" in err
    assert not marker.exists()


@pytest.mark.parametrize("where", WHERE)
def test_resume_refuses_crafted_pickle(tmp_path, good_run, where, capsys):
    run, marker = _crafted_run(tmp_path, good_run, where)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    rc = main(["train", "--resume", str(run), "--total-steps", str(512 * 8), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "refused" in err or "no longer read" in err, err
    assert "Traceback" not in err
    assert not marker.exists()
    # nothing in the run directory was rewritten
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("where", ["npz", "legacy", "npz_member"])
def test_load_checkpoint_refuses_crafted_pickle(tmp_path, good_run, where):
    run, marker = _crafted_run(tmp_path, good_run, where)
    with pytest.raises(CheckpointError):
        load_checkpoint(run)
    assert not marker.exists()


def test_eval_in_a_subprocess_runs_nothing(tmp_path, good_run):
    """The whole CLI process (fresh imports) refuses the payload too."""
    run, marker = _crafted_run(tmp_path, good_run, "npz")
    r = subprocess.run([sys.executable, "-m", "fastsample.cli", "eval", str(run), "--episodes", "2"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "not a fastsample checkpoint" in r.stderr, r.stderr
    assert not marker.exists()


def test_round_trip_is_exact(tmp_path):
    import torch

    g = torch.Generator()
    g.manual_seed(3)
    np.random.seed(5)
    np.random.standard_normal()  # a cached gaussian in the legacy state
    rng_state = np.random.get_state()
    state = {
        "f32": np.random.standard_normal((3, 4)).astype(np.float32),
        "i64": np.arange(5, dtype=np.int64), "bool": np.array([True, False]), "scalar": np.float64(0.1),
        "tensor": torch.randn(6, generator=g), "torch_rng": torch.get_rng_state(), "gen": g.get_state(),
        "numpy_rng": rng_state, "tuple": (0.9, 0.999), "int_keys": {0: {"step": torch.tensor(3.0)}, 7: "x"},
        "nested": [{"a": None, "b": float("nan"), "c": 1e300}, "s", True, 3],
        "__array__": "not a marker",
    }
    path = checkpoint.save(tmp_path / "c.npz", state)
    out = checkpoint.load(path)
    assert set(out) == set(state)
    assert np.array_equal(out["f32"], state["f32"]) and out["f32"].dtype == np.float32
    assert np.array_equal(out["i64"], state["i64"]) and out["i64"].dtype == np.int64
    assert np.array_equal(out["bool"], state["bool"])
    assert out["scalar"] == 0.1 and out["scalar"].dtype == np.float64
    assert isinstance(out["tensor"], np.ndarray) and np.array_equal(out["tensor"], state["tensor"].numpy())
    assert np.array_equal(out["torch_rng"], state["torch_rng"].numpy()) and out["torch_rng"].dtype == np.uint8
    assert out["tuple"] == (0.9, 0.999)
    assert set(out["int_keys"]) == {0, 7} and out["int_keys"][7] == "x" and float(out["int_keys"][0]["step"]) == 3.0
    assert out["nested"][0]["a"] is None and np.isnan(out["nested"][0]["b"]) and out["nested"][1:] == ["s", True, 3]
    assert out["__array__"] == "not a marker"
    # RNG states restore exactly
    np.random.standard_normal(7)
    np.random.set_state(out["numpy_rng"])
    a = np.random.standard_normal(7)
    np.random.set_state(rng_state)
    assert np.array_equal(a, np.random.standard_normal(7))
    g2 = torch.Generator()
    g2.set_state(checkpoint.to_torch(out["gen"]))
    assert torch.equal(torch.randn(4, generator=g2), torch.randn(4, generator=g))
    assert not list(tmp_path.glob("*.tmp*"))


def test_loads_without_torch_and_converts_to_state_dict(good_run):
    """A checkpoint loads in a process without torch; its model weights load into the model."""
    code = ("import sys; from fastsample.train import load_checkpoint; "
            f"c = load_checkpoint({good_run['run_dir']!r}); "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "m = c['runner']['model']; print(len(m), c['runner']['global_step'])")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[1] == str(good_run["steps"])

    from fastsample.checkpoint import model_state_dict
    from fastsample.learning.ppo import make_model
    from fastsample.sampling.envs import spaces_of

    ckpt = load_checkpoint(good_run["run_dir"])
    cfg = make_config("CartPole-v1", **{k: v for k, v in ckpt["config"].items() if k != "env"})
    model = make_model(cfg, *spaces_of("CartPole-v1"))
    sd = model_state_dict(ckpt)
    model.load_state_dict(sd)
    for k, v in model.state_dict().items():
        assert np.array_equal(v.numpy(), ckpt["runner"]["model"][k])


def test_unknown_objects_are_not_written(tmp_path):
    with pytest.raises(TypeError):
        checkpoint.save(tmp_path / "c.npz", {"x": object()})
    with pytest.raises(TypeError):
        checkpoint.save(tmp_path / "c.npz", {"x": np.array([object()])})
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04garbage", b"\x93NUMPY not an archive", b"[" * 100_000])
def test_damaged_or_odd_files_are_checkpoint_errors(tmp_path, content):
    path = tmp_path / "c.npz"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        checkpoint.load(path)


def test_deeply_nested_metadata_is_refused(tmp_path):
    import io
    import zipfile

    path = tmp_path / "c.npz"
    meta = ('{"format": "fastsample-checkpoint", "version": 1, "state": ' + "[" * 100_000 + "]" * 100_000 + "}")
    npy = io.BytesIO()
    np.lib.format.write_array(npy, np.frombuffer(meta.encode(), np.uint8))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("__meta__.npy", npy.getvalue())
    with pytest.raises(CheckpointError):
        checkpoint.load(path)


def test_a_directory_in_place_of_the_checkpoint_is_refused(tmp_path):
    (tmp_path / "c.npz").mkdir()
    with pytest.raises(CheckpointError, match="not a regular file"):
        checkpoint.load(tmp_path / "c.npz")
