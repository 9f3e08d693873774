"""Training loop: outputs, checkpoints, resume, meta checks, atomic writes."""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import bnnforge.models.train as train_mod
from bnnforge.models.data import Dataset, DatasetSplit, load_digits
from bnnforge.models.errors import BnnforgeError
from bnnforge.models.train import (
    CHECKPOINT_FILE,
    CURVE_FILE,
    METRIC_FIELDS,
    METRICS_CSV,
    METRICS_JSON,
    evaluate,
    load_checkpoint,
    lr_at,
    train,
)

META = {"topology": "tiny-mlp", "activation": "sign"}


class TinyNet(nn.Module):
    """Flatten -> Linear -> ReLU -> Linear with BNN-style latent weight clipping."""

    def __init__(self, in_features=16, hidden=16, classes=3, seed=0, dropout=0.0):
        super().__init__()
        torch.manual_seed(seed)
        self.fc1 = nn.Linear(in_features, hidden)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, classes)
        self.clip_calls = 0

    def forward(self, x):
        return self.fc2(self.drop(torch.relu(self.fc1(x.flatten(1)))))

    def clip_latent_weights(self):
        self.clip_calls += 1
        for m in (self.fc1, self.fc2):
            m.weight.clamp_(-1.0, 1.0)


def blobs(n_train=96, n_test=48, classes=3, seed=0) -> DatasetSplit:
    """Learnable synthetic 1x4x4 images: class k is bright in row k."""
    rng = np.random.default_rng(seed)

    def make(n, name):
        y = rng.integers(0, classes, size=n).astype(np.int64)
        x = rng.uniform(0, 0.3, size=(n, 1, 4, 4)).astype(np.float32)
        x[np.arange(n), 0, y, :] += 0.7
        return Dataset(x=x, y=y, name=name, num_classes=classes)

    return DatasetSplit(train=make(n_train, "blobs"), test=make(n_test, "blobs"))


def run(model, data, out, **kw):
    kw.setdefault("epochs", 2)
    kw.setdefault("batch_size", 32)
    kw.setdefault("lr", 0.01)
    kw.setdefault("meta", dict(META))
    kw.setdefault("progress", False)
    return train(model, data, out, **kw)


def states_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def no_temp_files(out: Path) -> bool:
    return not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------- outputs


def test_two_epochs_write_all_outputs(tmp_path, capsys):
    data = blobs()
    model = TinyNet()
    out = tmp_path / "run"
    result = run(model, data, out)

    assert sorted(p.name for p in out.iterdir()) == sorted([CHECKPOINT_FILE, CURVE_FILE, METRICS_CSV, METRICS_JSON])

    with open(out / METRICS_CSV) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0].keys()) == list(METRIC_FIELDS)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    for r in rows:
        assert 0.0 <= float(r["train_acc"]) <= 1.0 and 0.0 <= float(r["test_acc"]) <= 1.0
        assert float(r["train_loss"]) > 0 and float(r["seconds"]) >= 0

    doc = json.loads((out / METRICS_JSON).read_text())
    assert doc["meta"] == META and doc["dataset"] == "blobs"
    assert [r["epoch"] for r in doc["epochs"]] == [1, 2]
    assert doc["epochs"][1]["test_acc"] == pytest.approx(float(rows[1]["test_acc"]))

    assert (out / CURVE_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    ckpt = torch.load(out / CHECKPOINT_FILE, weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["meta"] == META
    assert len(ckpt["metrics"]) == 2 and ckpt["train_config"]["dataset"] == "blobs"
    assert set(ckpt["model_state"]) == set(model.state_dict())
    assert "state" in ckpt["optimizer_state"] and "param_groups" in ckpt["optimizer_state"]

    # the returned metrics are the last epoch's, evaluate() agrees with them
    assert result["epoch"] == 2 and result["test_acc"] == doc["epochs"][-1]["test_acc"]
    loss, acc = evaluate(model, data.test, batch_size=7)
    assert acc == pytest.approx(result["test_acc"]) and loss == pytest.approx(result["test_loss"], rel=1e-5)
    assert no_temp_files(out)

    printed = capsys.readouterr().out.strip().splitlines()
    assert len(printed) == 2 and "epoch 1/2" in printed[0] and "epoch 2/2" in printed[1]


def test_learns_digits_fast():
    data = load_digits()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    import tempfile

    with tempfile.TemporaryDirectory() as out:
        result = train(model, data, out, epochs=3, lr=0.01, meta={"topology": "mlp"}, progress=False)
        rows = json.loads((Path(out) / METRICS_JSON).read_text())["epochs"]
    assert result["test_acc"] > 0.85
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    # an epoch over 1,437 digits must take well under a second (generous bound
    # for a loaded CI machine; a per-sample DataLoader would be far slower)
    assert max(r["seconds"] for r in rows) < 1.0


def test_clip_called_after_every_step(tmp_path):
    data = blobs(n_train=100)
    model = TinyNet()
    run(model, data, tmp_path, epochs=2, batch_size=32, lr=5.0)  # huge lr pushes weights out
    assert model.clip_calls == 2 * math.ceil(100 / 32)
    assert model.fc1.weight.abs().max() <= 1.0 and model.fc2.weight.abs().max() <= 1.0
    assert model.fc1.bias.abs().max() > 1.0  # only what the model clips is clipped


def test_extra_loss_is_added(tmp_path):
    data = blobs()
    plain, reg = TinyNet(seed=1), TinyNet(seed=1)
    run(plain, data, tmp_path / "a", epochs=3)
    penalty = lambda m: 10.0 * sum((p**2).sum() for p in m.parameters())  # noqa: E731
    res = run(reg, data, tmp_path / "b", epochs=3, extra_loss=penalty)
    assert res["extra_loss"] > 0
    norm = lambda m: float(sum((p.detach() ** 2).sum() for p in m.parameters()))  # noqa: E731
    assert norm(reg) < 0.5 * norm(plain)
    rows = list(csv.DictReader(open(tmp_path / "a" / METRICS_CSV)))
    assert all(float(r["extra_loss"]) == 0.0 for r in rows)


def test_extra_loss_must_be_scalar(tmp_path):
    with pytest.raises(BnnforgeError, match="scalar tensor"):
        run(TinyNet(), blobs(), tmp_path, extra_loss=lambda m: torch.ones(3))


def test_same_seed_same_run_different_seed_differs(tmp_path):
    data = blobs()
    a, b, c = TinyNet(seed=5), TinyNet(seed=5), TinyNet(seed=5)
    ra = run(a, data, tmp_path / "a", seed=1)
    rb = run(b, data, tmp_path / "b", seed=1)
    run(c, data, tmp_path / "c", seed=2)
    assert states_equal(a, b) and ra["train_loss"] == rb["train_loss"]
    assert not states_equal(a, c)  # different data order


def test_lr_schedules():
    assert lr_at(0, 10, 0.1) == pytest.approx(0.1)
    assert lr_at(5, 10, 0.1) == pytest.approx(0.05)
    assert lr_at(9, 10, 0.1) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.9)))
    assert [lr_at(e, 6, 1.0, "step", step_size=2, gamma=0.5) for e in range(6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    with pytest.raises(BnnforgeError, match="unknown lr schedule"):
        lr_at(0, 3, 0.1, "linear")


def test_lr_recorded_per_epoch(tmp_path):
    run(TinyNet(), blobs(), tmp_path, epochs=4, lr=0.02, schedule="step", step_size=2, gamma=0.1)
    rows = json.loads((tmp_path / METRICS_JSON).read_text())["epochs"]
    assert [r["lr"] for r in rows] == pytest.approx([0.02, 0.02, 0.002, 0.002])


# ---------------------------------------------------------------- evaluate


def test_evaluate_matches_manual_and_restores_mode():
    x = np.zeros((4, 1, 1, 2), np.float32)
    x[:, 0, 0, 0] = [1, 0, 1, 0]
    x[:, 0, 0, 1] = [0, 1, 0, 1]
    ds = Dataset(x=x, y=np.array([0, 1, 1, 1], np.int64), name="t", num_classes=2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
    model.train()
    loss, acc = evaluate(model, ds, batch_size=3)
    logits = torch.tensor([[2.0, 0], [0, 1], [2, 0], [0, 1]])
    assert loss == pytest.approx(float(nn.functional.cross_entropy(logits, torch.tensor([0, 1, 1, 1])))
                                 , rel=1e-6)
    assert acc == 0.75
    assert model.training


# ---------------------------------------------------------------- resume


class Crash(Exception):
    pass


def test_resume_continues_and_matches_uninterrupted_run(tmp_path, capsys):
    data = blobs()
    steps = math.ceil(96 / 32)
    straight = TinyNet(seed=3, dropout=0.3)
    r_straight = run(straight, data, tmp_path / "straight", epochs=4)

    # crash in the middle of epoch 3 of a 4-epoch run
    crashing = TinyNet(seed=3, dropout=0.3)

    def crash_in_epoch_3(model):
        if model.clip_calls == 2 * steps + 1:
            raise Crash()
        return torch.zeros(())

    with pytest.raises(Crash):
        run(crashing, data, tmp_path / "split", epochs=4, extra_loss=crash_in_epoch_3)
    assert torch.load(tmp_path / "split" / CHECKPOINT_FILE, weights_only=True)["epoch"] == 2
    capsys.readouterr()

    resumed = TinyNet(seed=99, dropout=0.3)  # different init: everything must come from the checkpoint
    r_resumed = run(resumed, data, tmp_path / "split", epochs=4, resume=True)
    printed = capsys.readouterr().out
    assert "epoch 3/4" in printed and "epoch 4/4" in printed and "epoch 2/4" not in printed
    assert resumed.clip_calls == 2 * steps  # only epochs 3 and 4 were trained

    ckpt = torch.load(tmp_path / "split" / CHECKPOINT_FILE, weights_only=True)
    assert ckpt["epoch"] == 4 and [r["epoch"] for r in ckpt["metrics"]] == [1, 2, 3, 4]
    rows = list(csv.DictReader(open(tmp_path / "split" / METRICS_CSV)))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]

    # same schedule, data order, optimizer state and dropout RNG: bit-identical result
    assert states_equal(straight, resumed)
    for key in ("train_loss", "train_acc", "test_loss", "test_acc", "lr"):
        assert r_resumed[key] == r_straight[key]


def test_resume_with_more_epochs_extends_the_run(tmp_path):
    data = blobs()
    run(TinyNet(), data, tmp_path, epochs=2)
    model = TinyNet(seed=7)
    result = run(model, data, tmp_path, epochs=3, resume=True)
    assert result["epoch"] == 3 and model.clip_calls == math.ceil(96 / 32)
    rows = json.loads((tmp_path / METRICS_JSON).read_text())["epochs"]
    assert [r["epoch"] for r in rows] == [1, 2, 3]


def test_resume_when_already_done_trains_nothing(tmp_path):
    data = blobs()
    a = TinyNet(seed=1)
    r1 = run(a, data, tmp_path, epochs=2)
    b = TinyNet(seed=2)
    r2 = run(b, data, tmp_path, epochs=2, resume=True)
    assert b.clip_calls == 0 and states_equal(a, b)
    assert r2["epoch"] == 2 and r2["test_acc"] == r1["test_acc"]


def test_resume_refuses_other_topology(tmp_path):
    data = blobs()
    run(TinyNet(), data, tmp_path, epochs=1)
    ckpt = tmp_path / CHECKPOINT_FILE
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    model = TinyNet()
    ref = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(BnnforgeError) as ei:
        run(model, data, tmp_path, epochs=3, resume=True, meta={"topology": "cnv", "activation": "sign"})
    msg = str(ei.value)
    assert "\n" not in msg and str(ckpt) in msg
    assert "'tiny-mlp'" in msg and "'cnv'" in msg and "topology" in msg
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing touched
    assert all(torch.equal(ref[k], v) for k, v in model.state_dict().items())


def test_resume_refuses_other_activation(tmp_path):
    run(TinyNet(), blobs(), tmp_path, epochs=1)
    with pytest.raises(BnnforgeError, match=r"activation='sign'.*activation='relu'"):
        run(TinyNet(), blobs(), tmp_path, resume=True, meta={"topology": "tiny-mlp", "activation": "relu"})


def test_resume_refuses_other_dataset(tmp_path):
    data = blobs()
    run(TinyNet(), data, tmp_path, epochs=1)
    other = DatasetSplit(
        train=Dataset(data.train.x, data.train.y, "other", 3), test=Dataset(data.test.x, data.test.y, "other", 3)
    )
    with pytest.raises(BnnforgeError, match="'blobs'.*'other'"):
        run(TinyNet(), other, tmp_path, resume=True)


def test_resume_without_checkpoint(tmp_path):
    with pytest.raises(BnnforgeError) as ei:
        run(TinyNet(), blobs(), tmp_path, resume=True)
    assert str(tmp_path / CHECKPOINT_FILE) in str(ei.value) and "not found" in str(ei.value)


# ---------------------------------------------------------------- load_checkpoint


def test_load_checkpoint_roundtrip(tmp_path):
    trained = TinyNet(seed=1)
    run(trained, blobs(), tmp_path, epochs=1)
    fresh = TinyNet(seed=2)
    meta = load_checkpoint(tmp_path / CHECKPOINT_FILE, fresh, META)
    assert meta == META and states_equal(trained, fresh)
    assert load_checkpoint(tmp_path / CHECKPOINT_FILE, TinyNet(), {"topology": "tiny-mlp"}) == META
    assert load_checkpoint(tmp_path / CHECKPOINT_FILE, TinyNet(), None) == META


def test_load_checkpoint_meta_mismatch(tmp_path):
    run(TinyNet(), blobs(), tmp_path, epochs=1)
    path = tmp_path / CHECKPOINT_FILE
    with pytest.raises(BnnforgeError) as ei:
        load_checkpoint(path, TinyNet(), {"topology": "sfc", "activation": "sign"})
    msg = str(ei.value)
    assert "\n" not in msg and str(path) in msg and "'tiny-mlp'" in msg and "'sfc'" in msg
    with pytest.raises(BnnforgeError, match="no 'width'"):
        load_checkpoint(path, TinyNet(), {"width": 4})


def test_load_checkpoint_wrong_architecture(tmp_path):
    run(TinyNet(hidden=16), blobs(), tmp_path, epochs=1)
    path = tmp_path / CHECKPOINT_FILE
    with pytest.raises(BnnforgeError) as ei:
        load_checkpoint(path, TinyNet(hidden=8), META)
    msg = str(ei.value)
    assert "\n" not in msg and str(path) in msg and "fc1.weight" in msg and "(16, 16)" in msg and "(8, 16)" in msg
    with pytest.raises(BnnforgeError, match="missing keys"):
        load_checkpoint(path, nn.Sequential(nn.Linear(16, 3)), META)


@pytest.mark.parametrize("damage", ["missing", "garbage", "truncated", "not-ours", "directory"])
def test_load_checkpoint_bad_files(tmp_path, damage):
    run(TinyNet(), blobs(), tmp_path / "ok", epochs=1)
    good = (tmp_path / "ok" / CHECKPOINT_FILE).read_bytes()
    path = tmp_path / "bad.pt"
    if damage == "garbage":
        path.write_bytes(b"definitely not a torch file")
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "not-ours":
        torch.save({"state_dict": TinyNet().state_dict()}, path)
    elif damage == "directory":
        path.mkdir()
    with pytest.raises(BnnforgeError) as ei:
        load_checkpoint(path, TinyNet(), META)
    msg = str(ei.value)
    assert "\n" not in msg and str(path) in msg


def test_brevitas_model_checkpoint_loads_weights_only(tmp_path):
    qnn = pytest.importorskip("brevitas.nn")
    from brevitas.quant import SignedBinaryWeightPerTensorConst

    class BinMLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = qnn.QuantLinear(16, 8, bias=False, weight_quant=SignedBinaryWeightPerTensorConst)
            self.bn = nn.BatchNorm1d(8)
            self.fc2 = qnn.QuantLinear(8, 3, bias=False, weight_quant=SignedBinaryWeightPerTensorConst)

        def forward(self, x):
            return self.fc2(torch.tanh(self.bn(self.fc1(x.flatten(1)))))

        def clip_latent_weights(self):
            for m in (self.fc1, self.fc2):
                m.weight.data.clamp_(-1, 1)

    torch.manual_seed(0)
    model = BinMLP()
    run(model, blobs(), tmp_path, epochs=1, meta={"topology": "binmlp", "activation": "tanh"})
    ckpt = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert ckpt["meta"]["topology"] == "binmlp"
    fresh = BinMLP()
    load_checkpoint(tmp_path / CHECKPOINT_FILE, fresh, {"topology": "binmlp"})
    assert states_equal(model, fresh)


# ---------------------------------------------------------------- nothing half-written


@pytest.mark.parametrize("how", ["under-a-file", "is-a-file"])
def test_unwritable_out_dir_fails_before_anything(tmp_path, how):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    out = blocker / "run" if how == "under-a-file" else blocker
    model = TinyNet()
    ref = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(BnnforgeError) as ei:
        run(model, blobs(), out)
    msg = str(ei.value)
    assert "\n" not in msg and str(out) in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocker"] and blocker.read_text() == "x"
    assert model.clip_calls == 0 and all(torch.equal(ref[k], v) for k, v in model.state_dict().items())


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_out_dir_fails_before_anything(tmp_path):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        with pytest.raises(BnnforgeError, match="not writable"):
            run(TinyNet(), blobs(), out)
        assert list(out.iterdir()) == []
    finally:
        out.chmod(0o700)


def test_bad_meta_rejected_before_writing(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(BnnforgeError, match="meta"):
        run(TinyNet(), blobs(), out, meta={"topology": "x", "layers": object()})
    assert not out.exists()


def test_failed_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    data = blobs()
    run(TinyNet(), data, tmp_path, epochs=1)
    good = (tmp_path / CHECKPOINT_FILE).read_bytes()
    real_save = torch.save

    def failing_save(obj, f, *a, **k):
        f.write(b"partial garbage")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train_mod.torch, "save", failing_save)
    with pytest.raises(OSError):
        run(TinyNet(), data, tmp_path, epochs=1)
    monkeypatch.setattr(train_mod.torch, "save", real_save)
    assert (tmp_path / CHECKPOINT_FILE).read_bytes() == good
    assert no_temp_files(tmp_path)
    assert torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["epoch"] == 1


def test_argument_validation(tmp_path):
    for kw, frag in [
        (dict(epochs=0), "epochs"),
        (dict(batch_size=0), "batch_size"),
        (dict(lr=-1.0), "lr"),
        (dict(schedule="weird"), "schedule"),
    ]:
        with pytest.raises(BnnforgeError, match=frag):
            run(TinyNet(), blobs(), tmp_path / "v", **kw)
    assert not (tmp_path / "v").exists()


def test_real_mnist_t10k_training(tmp_path):
    root = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "mnist-t10k"
    if not (root / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST t10k files not present at {root}")
    from bnnforge.models.data import load_mnist

    with pytest.warns(UserWarning):
        data = load_mnist(root)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    result = train(model, data, tmp_path, epochs=2, lr=3e-3, meta={"topology": "mlp"}, progress=False)
    assert result["test_acc"] > 0.88


def test_progress_bar_on_a_tty_and_silent_otherwise(tmp_path, capsys, monkeypatch):
    run(TinyNet(), blobs(), tmp_path / "quiet", progress=True)  # captured stderr is no TTY
    assert "batch" not in capsys.readouterr().err
    monkeypatch.setattr(type(sys.stderr), "isatty", lambda self: True, raising=False)
    run(TinyNet(), blobs(), tmp_path / "bar", progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "batch" in err
    run(TinyNet(), blobs(), tmp_path / "off", progress=False)
    assert capsys.readouterr().err == ""


def test_trailing_single_sample_batch_is_skipped_for_batchnorm(tmp_path):
    class BNNet(TinyNet):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(16)

        def forward(self, x):
            return self.fc2(torch.relu(self.bn(self.fc1(x.flatten(1)))))

    model = BNNet()
    result = run(model, blobs(n_train=65), tmp_path, batch_size=32)  # 65 = 2 * 32 + 1
    assert model.clip_calls == 2 * 2 and result["epoch"] == 2
