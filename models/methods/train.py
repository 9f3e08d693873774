"""train_method: train the digits MLP (or, with `conv` in the config, a small conv net)
with one method (or a baseline), same code path as `bnnforge train` (models.train.train),
plus the method's hooks:

  clip_latent_weights      after every optimizer step (model method, as for BinaryNet)
  on_epoch_start(e, E)     before each epoch (EDE temperature of SD-BNN)
  regularization(ce)       added to the loss (binary_domain sparsity, margin Binary-L2)

CLI:  .venv/bin/python -m bnnforge.models.methods.train --method sibnn --out runs/m/sibnn --epochs 20 --seed 0
      .venv/bin/python -m bnnforge.models.methods.train --method ftbnn --config configs/methods/ftbnn_cnv.yaml \\
          --dataset mnist --data-dir ../shared/datasets/mnist-t10k --out runs/m/ftbnn_cnv
      .venv/bin/python -m bnnforge.models.methods.train --method sibnn_resnet \\
          --dataset mnist --data-dir ../shared/datasets/mnist-t10k --out runs/m/sibnn_resnet --export
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from bnnforge.models.errors import BnnforgeError
from .registry import (ALL_METHODS, RESIDUAL_METHODS, build_method_model, build_residual_method_model,
                       load_method_config)

TRAIN_KEYS = ("batch_size", "lr", "schedule", "weight_decay", "step_size", "gamma")


def method_stats(model) -> dict:
    """Method-specific numbers for the comparison: sparsity, margins, EDE state, ..."""
    from .binary_domain import BinaryDomainLayer, SparsityRegularizer
    from .margin import margin_stats

    stats = dict(margin_stats(model))
    bd = [m for m in model.modules() if isinstance(m, BinaryDomainLayer)]
    if bd:
        with torch.no_grad():
            stats["ones_fraction"] = float(SparsityRegularizer().ones_fraction(model))
            stats["layers"] = [{"alpha": m.alpha, "beta": m.beta, "m": m.integer_weight()[1], "q": m.q,
                                "scale": m.integer_weight()[2], "ones_fraction": float(m.ones_fraction())}
                               for m in bd]
    return stats


def train_method(name: str, data, out_dir, epochs: int, seed: int = 0, *, config: dict | str | None = None,
                 hidden=None, conv=None, pool_after=None, conv_pad: int | None = None,
                 params: dict | None = None, batch_size: int | None = None,
                 lr: float | None = None, progress: bool = False, num_threads: int | None = 1,
                 export: bool = False, **train_kw) -> dict:
    """Train method `name` on `data` (a models.data.DatasetSplit) into `out_dir`.

    Defaults come from configs/methods/<name>.yaml (or `config`: a dict or a path);
    `hidden`, `conv`, `pool_after`, `conv_pad`, `params`, `batch_size`, `lr` and
    `train_kw` override them (conv=() asks for the MLP whatever the config says). Seeds the
    weight init with `seed` too. Returns models.train.train's metrics plus
    "method", "params", "method_stats" and, with export=True, "onnx" (out_dir/model.onnx)
    and "export_check" (max abs diff torch vs qonnx on 16 test images)."""
    from bnnforge.models.train import seed_everything, train

    if name not in ALL_METHODS:
        raise BnnforgeError(f"unknown method {name!r}; choices: {', '.join(ALL_METHODS)}")
    cfg = config if isinstance(config, dict) else load_method_config(config or name)
    p = dict(cfg.get("params", {}), **(params or {}))
    tr = {k: v for k, v in cfg.get("train", {}).items() if k in TRAIN_KEYS}
    if batch_size is not None:
        tr["batch_size"] = int(batch_size)
    if lr is not None:
        tr["lr"] = float(lr)
    tr.update(train_kw)
    hidden = tuple(hidden or cfg.get("hidden", (256, 256)))
    conv = tuple(cfg.get("conv", ()) if conv is None else conv)
    # the config's pools and padding belong to its convs: an MLP override drops them
    cfg_pools, cfg_pad = (cfg.get("pool_after", ()), cfg.get("conv_pad", 0)) if conv else ((), 0)
    pool_after = tuple(cfg_pools if pool_after is None else pool_after)
    conv_pad = cfg_pad if conv_pad is None else conv_pad
    seed_everything(int(seed))
    if name in RESIDUAL_METHODS:
        model = build_residual_method_model(name, input_shape=data.input_shape, num_classes=data.num_classes, **p)
    else:
        model = build_method_model(name, hidden=hidden, input_shape=data.input_shape,
                                   num_classes=data.num_classes, conv=conv, pool_after=pool_after,
                                   conv_pad=conv_pad, **p)
    meta = dict(model.meta(), params={k: v for k, v in model.config.items()})
    t0 = time.perf_counter()
    res = train(model, data, out_dir, epochs=int(epochs), seed=int(seed), meta=meta, progress=progress,
                num_threads=num_threads, extra_loss_ce=lambda mod, ce: mod.regularization(ce),
                on_epoch_start=lambda mod, e, n: mod.on_epoch_start(e, n), **tr)
    res.update(method=name, params=model.config, train_seconds=time.perf_counter() - t0,
               method_stats=method_stats(model))
    if export:
        import numpy as np
        from bnnforge.models.export import check_export
        from .export import export_method_qonnx

        path = export_method_qonnx(model, Path(out_dir) / "model.onnx")
        res["onnx"] = str(path)
        res["export_check"] = check_export(model, path, np.asarray(data.test.x[:16]))
    res["model"] = model
    return res


def parse_param_overrides(items) -> dict:
    """`--param name=value` items (values in YAML) as a dict; one-line errors."""
    import yaml

    params = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise BnnforgeError(f"--param {item!r}: expected name=value")
        try:
            params[k] = yaml.safe_load(v)
        except yaml.YAMLError:
            raise BnnforgeError(f"--param {item!r}: the value is not valid YAML") from None
    return params


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bnnforge.models.methods.train", description=__doc__.splitlines()[0])
    ap.add_argument("--method", required=True, choices=ALL_METHODS)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default=None, help="YAML/JSON config (default configs/methods/<method>.yaml)")
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--param", action="append", default=[], help="name=value (YAML value), repeatable")
    ap.add_argument("--export", action="store_true")
    args = ap.parse_args(argv)
    from bnnforge.models.data import load_dataset

    try:
        cfg = load_method_config(args.config or args.method)
        params = parse_param_overrides(args.param)
        epochs = args.epochs or int(cfg.get("train", {}).get("epochs", 20))
        data = load_dataset(args.dataset, args.data_dir)
        res = train_method(args.method, data, args.out, epochs, args.seed, config=cfg, params=params,
                           export=args.export, progress=True)
    except BnnforgeError as e:
        print(f"bnnforge: error: {e}", file=sys.stderr)
        return 2
    res.pop("model")
    print(json.dumps({k: res[k] for k in ("method", "test_acc", "best_test_acc", "method_stats")
                      + (("export_check",) if args.export else ())}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
