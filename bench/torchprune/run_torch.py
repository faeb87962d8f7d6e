"""Torch-Pruning side of the structured benchmark (runs in bench/.venv-torch).

Run from the repository root (the driver ``bench.compare_torch_pruning`` does this):

    bench/.venv-torch/bin/python -m bench.torchprune.run_torch --config cfg.json --out out.json

For every seed and architecture of the config: builds the PyTorch twin of the Keras model
(``bench.architectures``: same layers, widths, BatchNorm momentum and epsilon), trains it
with the dense recipe (Adam, constant rate), then

* the control: the dense model trained ``ft_epochs`` more epochs with the fine-tune recipe
  (Adam, cosine decay to 0, per batch), no pruning;
* for every ratio: Torch-Pruning's ``MetaPruner`` with ``GroupMagnitudeImportance``
  (its default: L2 norm, mean over the coupled group) removes ``floor(ratio * width)`` of
  every layer's channels, prunekit's rule (``bench/torchprune/widths.py``; the classifier's
  output kept), then the same fine-tune.

and reports test accuracy, parameters and MACs (``tp.utils.count_ops_and_params``) and the
batch-1 and batch-32 speed-up over the dense model (``prunekit.metrics.timing``, timed in
alternating pairs; numpy only, importable here).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from bench import data
from bench.torchprune.widths import kept_width, tp_ratio
from prunekit.metrics.timing import TimingConfig, interleaved_speedup, timing_context

BN = {"momentum": 0.1, "eps": 1e-3}  # Keras' BatchNormalization(momentum=0.9) defaults


def vgg_small(widths: tuple[int, ...], num_classes: int = 10) -> nn.Module:
    layers: list[nn.Module] = []
    c_in = 1
    for width in widths:
        for _ in (1, 2):
            layers += [
                nn.Conv2d(c_in, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width, **BN),
                nn.ReLU(),
            ]
            c_in = width
        layers.append(nn.MaxPool2d(2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)]
    return nn.Sequential(*layers)


class Block(nn.Module):
    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, **BN)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width, **BN)
        self.short = nn.Conv2d(c_in, width, 1, stride=stride, bias=False)
        self.short_bn = nn.BatchNorm2d(width, **BN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.short_bn(self.short(x)))


class ResNetSmall(nn.Module):
    def __init__(self, widths: tuple[int, ...], num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0], **BN),
            nn.ReLU(),
        )
        blocks = []
        c_in = widths[0]
        for b, width in enumerate(widths):
            blocks.append(Block(c_in, width, 1 if b == 0 else 2))
            c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def build(arch: str, widths: tuple[int, ...]) -> nn.Module:
    if arch == "vgg_small":
        return vgg_small(widths)
    if arch == "resnet_small":
        return ResNetSmall(widths)
    raise ValueError(f"unknown architecture {arch!r}")


def classifier(model: nn.Module) -> nn.Module:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    epochs: int,
    lr: float,
    batch_size: int,
    cosine: bool,
    seed: int,
) -> list[float]:
    """Adam; ``cosine``: the rate decays from ``lr`` to 0 over every batch of the run (as
    Keras' CosineDecay in prunekit's fine-tune), else constant."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = len(x)
    per_epoch = math.ceil(n / batch_size)
    total = per_epoch * epochs
    gen = torch.Generator().manual_seed(seed)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    step = 0
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        running = 0.0
        for b in range(per_epoch):
            idx = order[b * batch_size : (b + 1) * batch_size]
            if cosine:
                for group in opt.param_groups:
                    group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            running += float(loss.detach()) * len(idx)
            step += 1
        losses.append(running / n)
    return losses


@torch.inference_mode()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = 0
    for s in range(0, len(x), 1000):
        correct += int((model(x[s : s + 1000]).argmax(1) == y[s : s + 1000]).sum())
    return correct / len(x)


def cost(model: nn.Module) -> dict[str, int]:
    macs, params = tp.utils.count_ops_and_params(model, torch.zeros(1, 1, 28, 28))
    return {"macs": int(macs), "params": int(params)}


def runner(model: nn.Module, batch: int) -> Any:
    model.eval()
    xb = torch.from_numpy(np.random.default_rng(0).random((batch, 1, 28, 28), dtype=np.float32))

    def call() -> object:
        with torch.inference_mode():
            return model(xb).numpy()

    return call


def speedups(dense: nn.Module, pruned: nn.Module, timing: TimingConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for batch in (1, 32):
        s = interleaved_speedup(runner(dense, batch), runner(pruned, batch), timing)
        out[f"batch{batch}"] = {
            "speedup": round(s.median, 3),
            "ci95": [round(v, 3) for v in s.ci95],
            "pairs": s.runs,
            "dense_ms": s.a.median_ms,
            "pruned_ms": s.b.median_ms,
        }
    return out


def prune(model: nn.Module, ratio: float) -> nn.Module:
    """``ratio`` of every layer's channels removed, to prunekit's widths (``kept_width``):
    every convolution gets its own ratio (``tp_ratio``), a coupled group's members all have
    the same width, so the group's ratio does not depend on which one Torch-Pruning reads."""
    pruned = copy.deepcopy(model)
    pruned.eval()
    per_layer = {
        m: tp_ratio(m.out_channels, ratio) for m in pruned.modules() if isinstance(m, nn.Conv2d)
    }
    pruner = tp.pruner.MetaPruner(
        pruned,
        torch.zeros(1, 1, 28, 28),
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=ratio,
        pruning_ratio_dict=per_layer,
        ignored_layers=[classifier(pruned)],
    )
    pruner.step()
    return pruned


def widths_of(model: nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(int(cfg.get("threads", 1)))
    timing = TimingConfig(**cfg.get("timing", {}))
    split = data.load(
        "fashion_mnist",
        channel_axis=True,
        val_size=cfg["val_size"],
        seed=0,
        train_subsample=cfg["n_train"],
        test_subsample=cfg.get("n_test"),
    )

    def tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), torch.from_numpy(y)

    xtr, ytr = tensors(split.x_train, split.y_train)
    xte, yte = tensors(split.x_test, split.y_test)
    lr, bs = cfg["learning_rate"], cfg["batch_size"]
    runs: list[dict[str, Any]] = []
    for arch in cfg["archs"]:
        widths = tuple(cfg["widths"][arch])
        for seed in cfg["seeds"]:
            torch.manual_seed(seed)
            started = time.perf_counter()
            dense = build(arch, widths)
            train(dense, xtr, ytr, cfg["dense_epochs"], lr, bs, cosine=False, seed=seed)
            row: dict[str, Any] = {
                "arch": arch,
                "seed": seed,
                "dense_accuracy": accuracy(dense, xte, yte),
                "dense_seconds": round(time.perf_counter() - started, 1),
                "dense_cost": cost(dense),
                "widths": widths_of(dense),
            }
            control = copy.deepcopy(dense)
            train(control, xtr, ytr, cfg["ft_epochs"], lr, bs, cosine=True, seed=seed + 1)
            row["control_accuracy"] = accuracy(control, xte, yte)
            row["ratios"] = {}
            for ratio in cfg["ratios"]:
                started = time.perf_counter()
                pruned = prune(dense, ratio)
                cut_acc = accuracy(pruned, xte, yte)
                train(pruned, xtr, ytr, cfg["ft_epochs"], lr, bs, cosine=True, seed=seed + 1)
                entry = {
                    "accuracy": accuracy(pruned, xte, yte),
                    "accuracy_after_cut": cut_acc,
                    "seconds": round(time.perf_counter() - started, 1),
                    "cost": cost(pruned),
                    "widths": widths_of(pruned),
                    "target_widths": [kept_width(w, ratio) for w in widths_of(dense)],
                }
                if cfg.get("time_speed", True):
                    entry["speed"] = speedups(dense, pruned, timing)
                row["ratios"][str(ratio)] = entry
                print(json.dumps({"arch": arch, "seed": seed, "ratio": ratio, **entry}), flush=True)
            runs.append(row)
            print(
                f"torch {arch} seed {seed}: dense {row['dense_accuracy']:.4f} "
                f"control {row['control_accuracy']:.4f}",
                flush=True,
            )
    return {
        "side": "torch_pruning",
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_pruning": getattr(tp, "__version__", "?"),
            "threads": torch.get_num_threads(),
        },
        "timing_context": timing_context(),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    cfg = json.loads(args.config.read_text())
    result = run(cfg)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
