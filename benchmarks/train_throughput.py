"""Training throughput of LFC with bnnforge's quantizers vs. the same network in plain
float PyTorch, same run, same data (MNIST-format; the real t10k split when it is
beside the project, else synthetic images of the same shape). Prints images/s and
the ratio.

    .venv/bin/python benchmarks/train_throughput.py [--steps 20] [--batch 128]
"""
import argparse
import time
from pathlib import Path

import torch
from torch import nn

from bnnforge.models.topologies import build_model

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "mnist-t10k"


def float_lfc():
    layers, fan_in = [nn.Flatten()], 784
    for w in (1024, 1024, 1024):
        layers += [nn.Linear(fan_in, w, bias=False), nn.BatchNorm1d(w), nn.Hardtanh()]
        fan_in = w
    layers.append(nn.Linear(fan_in, 10, bias=False))
    return nn.Sequential(*layers)


def images(n):
    if MNIST.is_dir():
        from bnnforge.models.data import load_mnist
        d = load_mnist(MNIST).train
        return torch.from_numpy(d.x[:n]), torch.from_numpy(d.y[:n]), "MNIST t10k (real)"
    g = torch.Generator().manual_seed(0)
    return torch.rand((n, 1, 28, 28), generator=g), torch.randint(0, 10, (n,), generator=g), "synthetic"


def throughput(model, x, y, steps, batch):
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()  # two warm-up steps
        j = (i * batch) % (len(x) - batch)
        opt.zero_grad()
        loss_fn(model(x[j:j + batch]), y[j:j + batch]).backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=128)
    a = ap.parse_args()
    x, y, src = images(4096)
    torch.manual_seed(0)
    q = throughput(build_model("lfc", "unipolar"), x, y, a.steps, a.batch)
    f = throughput(float_lfc(), x, y, a.steps, a.batch)
    print(f"LFC training on {src}, batch {a.batch}, {a.steps} steps, {torch.get_num_threads()} threads")
    print(f"  bnnforge quantized (unipolar): {q:8.0f} images/s")
    print(f"  plain float PyTorch:           {f:8.0f} images/s")
    print(f"  ratio quantized / float:       {q / f:8.2f}")


if __name__ == "__main__":
    main()
