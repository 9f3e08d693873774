"""Generic training loop for bnnforge classifiers (any ``torch.nn.Module``).

:func:`train` runs Adam with a cosine (default) or step learning-rate
schedule on cross-entropy, calls ``model.clip_latent_weights()`` after every
optimizer step when the model has it, and writes into ``out_dir``, each file
atomically (temporary file in the same directory, then ``os.replace``):

* ``metrics.csv``   one row per epoch: ``epoch, train_loss, train_acc,
  test_loss, test_acc, extra_loss, lr, seconds``
* ``metrics.json``  ``{"meta": ..., "dataset": ..., "epochs": [row, ...]}``
* ``curve.png``     loss and accuracy vs epoch (drawn after the first and the
  last epoch of a call and at most every ``CURVE_INTERVAL_S`` seconds between)

``seconds`` in the metrics is the time of the epoch's training and test
evaluation, without the file writes.
* ``checkpoint.pt`` after every epoch (format below)

Checkpoint format (a dict, loadable with ``torch.load(path,
weights_only=True)``)::

    {
      "format": "bnnforge-checkpoint", "version": 1,
      "epoch": int,                   # completed epochs
      "model_state": state_dict,
      "optimizer_state": Adam state_dict,
      "metrics": [row, ...],          # rows as in metrics.csv
      "meta": dict,                   # the caller's meta, verbatim
      "train_config": {"dataset", "num_classes", "input_shape", "epochs",
                       "batch_size", "lr", "schedule", "step_size",
                       "gamma", "weight_decay", "seed"},
      "torch_rng_state": uint8 tensor # CPU generator state after the epoch
    }

``meta`` identifies the model (topology name, activation kind, ...): on
``resume=True`` and in :func:`load_checkpoint` every key of the expected meta
must equal the checkpoint's value, otherwise :class:`BnnforgeError` is raised
naming the file, the key and both values.  Keep run-varying information out
of ``meta``.  ``train`` additionally refuses to resume on another dataset.

Learning rate at epoch ``e`` (0-based) of ``epochs`` is a pure function of
``e`` (cosine: ``lr * (1 + cos(pi * e / epochs)) / 2``; step: ``lr * gamma **
(e // step_size)``), and the shuffling order of epoch ``e`` depends only on
``(seed, e)``, so a resumed run follows the same path as an uninterrupted one.

Threads: this module leaves ``torch.set_num_threads`` alone unless
``num_threads`` is passed.  For the small models bnnforge trains, one thread
is usually fastest; on a busy machine torch's default (one per core) can be
10-100x slower because of OpenMP spin-waiting, so callers running several
trainings (or anything else) side by side should pass ``num_threads=1``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from bnnforge.models.data import Dataset, DatasetSplit
from bnnforge.models.errors import BnnforgeError

__all__ = [
    "CHECKPOINT_FILE",
    "CURVE_FILE",
    "METRICS_CSV",
    "METRICS_JSON",
    "METRIC_FIELDS",
    "evaluate",
    "load_checkpoint",
    "lr_at",
    "seed_everything",
    "train",
]

CHECKPOINT_FILE = "checkpoint.pt"
METRICS_CSV = "metrics.csv"
METRICS_JSON = "metrics.json"
CURVE_FILE = "curve.png"
CHECKPOINT_FORMAT = "bnnforge-checkpoint"
#: curve.png is redrawn after the last epoch and at most this often before.
CURVE_INTERVAL_S = 10.0
CHECKPOINT_VERSION = 1

METRIC_FIELDS = (
    "epoch",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "extra_loss",
    "lr",
    "seconds",
)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _err(path: os.PathLike | str, what: str) -> BnnforgeError:
    return BnnforgeError(_one_line(f"{path}: {what}"))


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy's global RNG and torch."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def lr_at(epoch: int, epochs: int, lr: float, schedule: str = "cosine",
          step_size: int | None = None, gamma: float = 0.1) -> float:
    """Learning rate used during 0-based ``epoch`` of a run of ``epochs``."""
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))
    if schedule == "step":
        size = step_size if step_size is not None else max(1, epochs // 3)
        return lr * gamma ** (epoch // size)
    if schedule == "constant":
        return lr
    raise BnnforgeError(f"unknown lr schedule {schedule!r}; choose one of: cosine, step, constant")


def _epoch_permutation(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    g = torch.Generator()
    g.manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2**63))
    return torch.randperm(n, generator=g).to(device)


def _atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write ``path`` via a temporary file in the same directory + os.replace."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _check_writable(out_dir: Path) -> None:
    """Create ``out_dir`` if needed and prove a file can be created in it."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise _err(out_dir, "output path exists and is not a directory") from None
    except OSError as e:
        raise _err(out_dir, f"cannot create output directory ({e.strerror or e})") from None
    if not out_dir.is_dir():
        raise _err(out_dir, "output path exists and is not a directory")
    try:
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=".write-test.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise _err(out_dir, f"output directory is not writable ({e.strerror or e})") from None


_PLAIN = (str, int, float, bool, type(None))


def _check_plain(value: Any, where: str) -> None:
    """Meta must be JSON-able and loadable with torch.load(weights_only=True)."""
    if isinstance(value, _PLAIN):
        if isinstance(value, float) and not math.isfinite(value):
            raise BnnforgeError(f"meta{where}: non-finite float {value!r} is not allowed")
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise BnnforgeError(f"meta{where}: keys must be str, got {type(k).__name__} {k!r}")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise BnnforgeError(
        f"meta{where}: values must be str/int/float/bool/None/list/dict, got {type(value).__name__}"
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _check_meta(path: Path, stored: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    problems = []
    for key, want in expected.items():
        if key not in stored:
            problems.append(f"checkpoint has no {key!r}, caller expects {key}={want!r}")
            continue
        have = stored[key]
        if _jsonable(have) != _jsonable(want):
            problems.append(f"checkpoint has {key}={have!r}, caller expects {key}={want!r}")
    if problems:
        raise _err(path, "meta mismatch: " + "; ".join(problems))


def _read_checkpoint(path: Path) -> dict:
    if not path.exists():
        raise _err(path, "checkpoint file not found")
    if not path.is_file():
        raise _err(path, "checkpoint path is not a file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt zip, unpickling refusal, truncated file ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise _err(path, f"not a readable checkpoint ({type(e).__name__}: {first})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise _err(path, "not a bnnforge checkpoint (missing format marker)")
    if ckpt.get("version") != CHECKPOINT_VERSION:
        raise _err(path, f"unsupported checkpoint version {ckpt.get('version')!r}, expected {CHECKPOINT_VERSION}")
    for key, typ in (("epoch", int), ("model_state", dict), ("optimizer_state", dict),
                     ("metrics", list), ("meta", dict), ("train_config", dict)):
        if not isinstance(ckpt.get(key), typ):
            raise _err(path, f"checkpoint field {key!r} missing or not a {typ.__name__}")
    return ckpt


def _load_model_state(path: Path, model: torch.nn.Module, state: Mapping[str, Any]) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and isinstance(state[k], torch.Tensor) and isinstance(own[k], torch.Tensor)
        and state[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:3]}{' ...' if len(missing) > 3 else ''}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}")
    if shapes:
        problems.append("shape mismatch " + ", ".join(shapes[:3]) + (" ..." if len(shapes) > 3 else ""))
    if problems:
        raise _err(path, "model does not match checkpoint: " + "; ".join(problems))
    try:
        model.load_state_dict(state, strict=True)
    except Exception as e:
        raise _err(path, f"cannot load model state ({type(e).__name__}: {e})") from None


# --------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------


def load_checkpoint(path: os.PathLike | str, model: torch.nn.Module,
                    expected_meta: Mapping[str, Any] | None) -> dict:
    """Load ``checkpoint.pt`` weights into ``model`` and return the stored meta.

    Every key of ``expected_meta`` must equal the checkpoint's meta value
    (pass ``None`` to skip the check).  Missing/corrupt files, meta mismatch
    and state_dict mismatch all raise :class:`BnnforgeError` with a one-line
    message naming the file.
    """
    path = Path(path)
    ckpt = _read_checkpoint(path)
    if expected_meta is not None:
        _check_meta(path, ckpt["meta"], expected_meta)
    _load_model_state(path, model, ckpt["model_state"])
    return dict(ckpt["meta"])


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _as_tensors(ds: Dataset, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(np.ascontiguousarray(ds.x, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(ds.y, dtype=np.int64))
    return x.to(device), y.to(device)


@torch.no_grad()
def _evaluate_tensors(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                      batch_size: int) -> tuple[float, float]:
    was_training = model.training
    model.eval()
    try:
        total_loss = 0.0
        correct = 0
        for start in range(0, len(y), batch_size):
            xb = x[start:start + batch_size]
            yb = y[start:start + batch_size]
            logits = model(xb)
            total_loss += float(F.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(dim=1) == yb).sum())
    finally:
        model.train(was_training)
    n = max(len(y), 1)
    return total_loss / n, correct / n


def evaluate(model: torch.nn.Module, dataset: Dataset, batch_size: int = 512) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on ``dataset`` (eval mode,
    no gradients; the model's train/eval mode is restored afterwards)."""
    if len(dataset) == 0:
        raise BnnforgeError(f"dataset {dataset.name!r}: cannot evaluate on an empty dataset")
    if int(batch_size) < 1:
        raise BnnforgeError(f"batch_size must be >= 1, got {batch_size}")
    x, y = _as_tensors(dataset, _model_device(model))
    return _evaluate_tensors(model, x, y, int(batch_size))


def _write_outputs(out_dir: Path, history: list[dict], meta: dict, dataset: str, curve: bool = True) -> None:
    def write_csv(f):
        text = io.StringIO()
        w = csv.DictWriter(text, fieldnames=list(METRIC_FIELDS), lineterminator="\n")
        w.writeheader()
        for row in history:
            w.writerow({k: row[k] for k in METRIC_FIELDS})
        f.write(text.getvalue().encode())

    def write_json(f):
        doc = {"meta": _jsonable(meta), "dataset": dataset, "epochs": history}
        f.write((json.dumps(doc, indent=2) + "\n").encode())

    _atomic_write(out_dir / METRICS_CSV, write_csv)
    _atomic_write(out_dir / METRICS_JSON, write_json)
    if curve:
        _atomic_write(out_dir / CURVE_FILE, lambda f: _plot_curve(f, history, meta))


def _plot_curve(f, history: list[dict], meta: Mapping[str, Any]) -> None:
    # Figure + FigureCanvasAgg: the Agg backend without touching pyplot's
    # global state or the user's configured backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(9, 3.5), dpi=90)
    FigureCanvasAgg(fig)
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    ax_loss.plot(epochs, [r["test_loss"] for r in history], "s-", label="test")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.set_title("loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [r["train_acc"] for r in history], "o-", label="train")
    ax_acc.plot(epochs, [r["test_acc"] for r in history], "s-", label="test")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0.0, 1.0)
    ax_acc.set_title("accuracy")
    ax_acc.legend()
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
    title = ", ".join(f"{k}={v}" for k, v in meta.items() if isinstance(v, (str, int, float)))
    if title:
        fig.suptitle(title[:120], fontsize=9)
    fig.tight_layout()
    fig.savefig(f, format="png")


def _final_metrics(history: list[dict], out_dir: Path) -> dict:
    best = max(history, key=lambda r: r["test_acc"])
    result = dict(history[-1])
    result["best_test_acc"] = best["test_acc"]
    result["best_epoch"] = best["epoch"]
    result["out_dir"] = str(out_dir)
    return result


def train(
    model: torch.nn.Module,
    data: DatasetSplit,
    out_dir: os.PathLike | str,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    resume: bool = False,
    extra_loss: Callable[[torch.nn.Module], torch.Tensor] | None = None,
    progress: bool = True,
    meta: dict,
    schedule: str = "cosine",
    step_size: int | None = None,
    gamma: float = 0.1,
    weight_decay: float = 0.0,
    eval_batch_size: int = 1024,
    num_threads: int | None = None,
    extra_loss_ce: Callable[[torch.nn.Module, torch.Tensor], torch.Tensor] | None = None,
    on_epoch_start: Callable[[torch.nn.Module, int, int], None] | None = None,
) -> dict:
    """Train ``model`` on ``data.train``, evaluating on ``data.test`` each epoch.

    ``epochs`` is the total number of epochs of the run; with ``resume=True``
    training continues from ``out_dir/checkpoint.pt`` at the epoch after the
    stored one (nothing is trained if it already reached ``epochs``).
    ``seed`` seeds torch/numpy/random and fixes the data order of every epoch.
    ``extra_loss(model)`` (a scalar tensor) is added to the cross-entropy;
    ``extra_loss_ce(model, ce)`` likewise, for regularizers whose weight depends on
    the batch's cross-entropy ``ce`` (both may be given; their sum is the extra loss).
    ``on_epoch_start(model, epoch, epochs)`` is called before each epoch (0-based
    ``epoch``; also for the first epoch of a resumed run), e.g. for temperature
    schedules, which must then be pure functions of ``epoch``.
    ``schedule``: ``"cosine"`` (default), ``"step"`` (multiply by ``gamma``
    every ``step_size`` epochs, default ``epochs // 3``) or ``"constant"``.
    Returns the last epoch's metrics plus ``best_test_acc``, ``best_epoch``
    and ``out_dir``.
    """
    out_dir = Path(out_dir)
    # ---- validate everything before touching the disk -------------------
    if not isinstance(model, torch.nn.Module):
        raise BnnforgeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(data, DatasetSplit):
        raise BnnforgeError(f"data must be a models.data.DatasetSplit, got {type(data).__name__}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise BnnforgeError(f"epochs must be a positive integer, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise BnnforgeError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise BnnforgeError(f"lr must be a positive number, got {lr!r}")
    if not isinstance(meta, dict):
        raise BnnforgeError(f"meta must be a dict, got {type(meta).__name__}")
    _check_plain(meta, "")
    lr_at(0, epochs, float(lr), schedule, step_size, gamma)  # validates schedule
    if schedule == "step" and step_size is not None and step_size < 1:
        raise BnnforgeError(f"step_size must be >= 1, got {step_size}")
    if len(data.train) == 0 or len(data.test) == 0:
        raise BnnforgeError(f"dataset {data.name!r}: train and test splits must be non-empty")
    if not any(p.requires_grad for p in model.parameters()):
        raise BnnforgeError("model has no trainable parameters")
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))

    _check_writable(out_dir)
    ckpt_path = out_dir / CHECKPOINT_FILE

    train_config = {
        "dataset": data.name,
        "num_classes": data.num_classes,
        "input_shape": list(data.input_shape),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": float(lr),
        "schedule": schedule,
        "step_size": step_size,
        "gamma": float(gamma),
        "weight_decay": float(weight_decay),
        "seed": int(seed),
    }

    seed_everything(int(seed))
    device = _model_device(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(lr), weight_decay=float(weight_decay))
    history: list[dict] = []
    start_epoch = 0

    if resume:
        ckpt = _read_checkpoint(ckpt_path)
        _check_meta(ckpt_path, ckpt["meta"], meta)
        stored_ds = ckpt["train_config"].get("dataset")
        if stored_ds != data.name:
            raise _err(ckpt_path, f"checkpoint was trained on dataset {stored_ds!r}, caller passes {data.name!r}")
        _load_model_state(ckpt_path, model, ckpt["model_state"])
        try:
            optimizer.load_state_dict(ckpt["optimizer_state"])
        except Exception as e:
            raise _err(ckpt_path, f"cannot restore optimizer state ({type(e).__name__}: {e})") from None
        start_epoch = int(ckpt["epoch"])
        history = [dict(r) for r in ckpt["metrics"]][:start_epoch]
        rng = ckpt.get("torch_rng_state")
        if isinstance(rng, torch.Tensor):
            torch.set_rng_state(rng)
        if start_epoch >= epochs:
            print(f"[{data.name}] checkpoint {ckpt_path} already at epoch {start_epoch} >= {epochs}; nothing to train",
                  flush=True)
            if not history:
                raise _err(ckpt_path, "checkpoint holds no metrics")
            return _final_metrics(history, out_dir)

    x_train, y_train = _as_tensors(data.train, device)
    x_test, y_test = _as_tensors(data.test, device)
    # A trailing batch of one sample breaks BatchNorm in training mode: skip
    # that one (randomly chosen, the order is shuffled) sample per epoch.
    n = len(y_train) - 1 if len(y_train) % batch_size == 1 and len(y_train) > 1 else len(y_train)
    steps = math.ceil(n / batch_size)
    clip = getattr(model, "clip_latent_weights", None)
    clip = clip if callable(clip) else None
    isatty = getattr(sys.stderr, "isatty", None)
    show_bar = bool(progress) and callable(isatty) and bool(isatty())
    if show_bar:
        from tqdm import tqdm

    last_curve = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        epoch_lr = lr_at(epoch, epochs, float(lr), schedule, step_size, gamma)
        for group in optimizer.param_groups:
            group["lr"] = epoch_lr
        perm = _epoch_permutation(len(y_train), int(seed), epoch, device)[:n]
        if on_epoch_start is not None:
            on_epoch_start(model, epoch, epochs)
        model.train()
        sum_loss = torch.zeros((), dtype=torch.float64, device=device)
        sum_extra = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        batches = range(steps)
        bar = None
        if show_bar:
            bar = tqdm(batches, desc=f"epoch {epoch + 1}/{epochs}", leave=False, unit="batch", dynamic_ncols=True)
            batches = bar
        for b in batches:
            idx = perm[b * batch_size:(b + 1) * batch_size]
            xb = x_train.index_select(0, idx)
            yb = y_train.index_select(0, idx)
            optimizer.zero_grad(set_to_none=True)
            logits = model(xb)
            ce = F.cross_entropy(logits, yb)
            loss = ce
            extras = []
            if extra_loss is not None:
                extras.append(("extra_loss", extra_loss(model)))
            if extra_loss_ce is not None:
                extras.append(("extra_loss_ce", extra_loss_ce(model, ce)))
            for what, extra in extras:
                if not isinstance(extra, torch.Tensor) or extra.numel() != 1:
                    raise BnnforgeError(
                        f"{what} must return a scalar tensor, got {type(extra).__name__}"
                        + (f" of shape {tuple(extra.shape)}" if isinstance(extra, torch.Tensor) else "")
                    )
                extra = extra.reshape(())
                loss = loss + extra
                sum_extra += extra.detach().double() * len(idx)
            if not torch.isfinite(loss):
                raise BnnforgeError(
                    f"non-finite loss {float(loss)} at epoch {epoch + 1}, batch {b + 1}/{steps}; "
                    f"try a lower lr (now {epoch_lr:g})"
                )
            loss.backward()
            optimizer.step()
            if clip is not None:
                with torch.no_grad():
                    clip()
            sum_loss += ce.detach().double() * len(idx)
            correct += (logits.detach().argmax(dim=1) == yb).sum()
            if bar is not None and (b % 10 == 0 or b == steps - 1):
                bar.set_postfix(loss=f"{ce.item():.4f}")
        if bar is not None:
            bar.close()
        test_loss, test_acc = _evaluate_tensors(model, x_test, y_test, int(eval_batch_size))
        row = {
            "epoch": epoch + 1,
            "train_loss": float(sum_loss) / n,
            "train_acc": int(correct) / n,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "extra_loss": float(sum_extra) / n,
            "lr": epoch_lr,
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        print(
            f"[{data.name}] epoch {epoch + 1}/{epochs}  train loss {row['train_loss']:.4f} "
            f"acc {row['train_acc']:.4f}  test loss {test_loss:.4f} acc {test_acc:.4f}  "
            f"lr {epoch_lr:.2e}  {row['seconds']:.2f}s",
            flush=True,
        )
        ckpt = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "epoch": epoch + 1,
            "model_state": {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v
                            for k, v in model.state_dict().items()},
            "optimizer_state": optimizer.state_dict(),
            "metrics": [dict(r) for r in history],
            "meta": meta,
            "train_config": train_config,
            "torch_rng_state": torch.get_rng_state(),
        }
        _atomic_write(ckpt_path, lambda f: torch.save(ckpt, f))
        # Rendering the PNG costs ~0.2 s: draw it on the first epoch of this
        # call (replacing any stale curve), on the last, and at most every
        # CURVE_INTERVAL_S seconds in between.
        now = time.perf_counter()
        draw = epoch == start_epoch or epoch + 1 == epochs or now - last_curve >= CURVE_INTERVAL_S
        _write_outputs(out_dir, history, meta, data.name, curve=draw)
        if draw:
            last_curve = time.perf_counter()

    return _final_metrics(history, out_dir)
