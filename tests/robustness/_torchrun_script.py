"""Evaluates a fixed digits MLP with genflow.robustness; run directly (one process) or under torchrun (several).

Usage: python _torchrun_script.py OUT.json
"""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist
from torch import nn

from genflow.robustness import evaluate_robustness
from genflow.robustness.run import digits_attack_set


def main() -> None:
    distributed = "RANK" in os.environ
    if distributed:
        dist.init_process_group("gloo")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()
    x, y = digits_attack_set(10)
    report = evaluate_robustness(model, x, y, epsilons=[8 / 255], attacks=["pgd_eot"], repeats=1,
                                 settings={"*": {"steps": 3}})  # fmt: skip
    if not distributed or dist.get_rank() == 0:
        points = report.points
        out = {"index": points.index.tolist(), "labels": points.labels.tolist(), "clean": points.clean.tolist(),
               "correct_shape": list(points.correct.shape), "ranks": report.protocol["ranks"]}  # fmt: skip
        with open(sys.argv[1], "w", encoding="utf-8") as fh:
            json.dump(out, fh)
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
