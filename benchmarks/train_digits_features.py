"""Train the DigitsFeatureNet whose weights ship in ``genflow/metrics/weights/``.

Seeded, CPU, well under a minute on two cores: Adam on the train split of
scikit-learn's 8x8 digits with random shifts of up to one pixel (drawn from an
explicit generator), early stopping on validation NLL, then test accuracy of the
best epoch. Writes, each atomically:

* ``digits_features.safetensors``: the weights (safetensors, no pickle);
* ``digits_features.json``: training config, accuracies, file size and sha256 of the weights.

Run from the repository root::

    .venv/bin/python benchmarks/train_digits_features.py
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor

from genflow.io import atomic_path, write_text_atomic
from genflow.metrics import DigitsFeatureNet
from genflow.metrics.digits_features import load_digits_split

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "genflow" / "metrics" / "weights" / "digits_features.safetensors"


def random_shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Shift each image by an integer offset in ``[-max_shift, max_shift]`` per axis, filling with 0."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (n, h, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (n, 1, w)
    return padded[torch.arange(n)[:, None, None], 0, rows, cols].unsqueeze(1)


@torch.no_grad()
def evaluate(net: DigitsFeatureNet, x: Tensor, y: Tensor) -> tuple[float, float]:
    """(mean NLL, accuracy) in eval mode."""
    net.eval()
    logits = net(x)
    return float(F.cross_entropy(logits, y)), int((logits.argmax(1) == y).sum()) / len(y)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="weights file (.safetensors)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=80)
    parser.add_argument("--patience", type=int, default=12, help="epochs without a better val NLL before stopping")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--max-shift", type=int, default=1, help="random shift in pixels (augmentation)")
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    x_train, y_train = load_digits_split("train")
    x_val, y_val = load_digits_split("val")
    x_test, y_test = load_digits_split("test")

    # A script, not library code: the global seed fixes the weight init and dropout;
    # shuffling and augmentation draw from their own explicit generator.
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    net = DigitsFeatureNet("classification", dropout=args.dropout)
    optimiser = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.weight_decay)

    best = (float("inf"), -1, None)  # (val NLL, epoch, state)
    start = time.perf_counter()
    for epoch in range(args.max_epochs):
        net.train()
        order = torch.randperm(len(x_train), generator=generator)
        for idx in order.split(args.batch_size):
            xb = random_shift(x_train[idx], args.max_shift, generator)
            loss = F.cross_entropy(net(xb), y_train[idx])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        val_nll, val_acc = evaluate(net, x_val, y_val)
        print(f"epoch {epoch:3d}  train loss {float(loss):.4f}  val NLL {val_nll:.4f}  val acc {val_acc:.4f}")
        if val_nll < best[0]:
            best = (val_nll, epoch, copy.deepcopy(net.state_dict()))
        elif epoch - best[1] >= args.patience:
            print(f"early stop: no better val NLL since epoch {best[1]}")
            break
    seconds = time.perf_counter() - start

    net.load_state_dict(best[2])
    val_nll, val_acc = evaluate(net, x_val, y_val)
    test_nll, test_acc = evaluate(net, x_test, y_test)
    print(f"best epoch {best[1]}: val acc {val_acc:.4f}, test acc {test_acc:.4f} (test NLL {test_nll:.4f})")

    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(args.out) as tmp:
        save_file(state, str(tmp), metadata={"model": "genflow.metrics.DigitsFeatureNet", "input_range": "[0, 1]"})
    record = {
        "weights": args.out.name,
        "sha256": sha256_of(args.out),
        "bytes": args.out.stat().st_size,
        "parameters": sum(v.numel() for v in state.values()),
        "test_accuracy": test_acc,
        "test_correct": f"{round(test_acc * len(y_test))}/{len(y_test)}",
        "test_nll": test_nll,
        "val_accuracy": val_acc,
        "val_nll": val_nll,
        "split_sizes": {"train": len(y_train), "val": len(y_val), "test": len(y_test)},
        "best_epoch": best[1],
        "epochs_run": epoch + 1,
        "train_seconds": round(seconds, 1),
        "input_range": [0.0, 1.0],
        "config": {
            "seed": args.seed,
            "split": "genflow.data.digits (stratified 70/10/20 per label, torch.randperm with manual_seed(0))",
            "optimiser": "AdamW",
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "batch_size": args.batch_size,
            "max_epochs": args.max_epochs,
            "patience": args.patience,
            "early_stopping": "best val NLL",
            "augmentation": f"random integer shift in [-{args.max_shift}, {args.max_shift}] px per axis, zero fill",
            "dropout": args.dropout,
            "threads": args.threads,
            "torch": torch.__version__,
        },
    }
    write_text_atomic(args.out.with_suffix(".json"), json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out} ({record['bytes']} bytes, sha256 {record['sha256'][:12]}...) in {seconds:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
