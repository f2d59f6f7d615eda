"""How the digits_dit recipe's learning rate and parameterisation were chosen: a short sweep.

Trains the `digits_dit` recipe for ``--steps`` steps per setting (each from the
same seed) and reports digits FD of 1000 samples for DPM-Solver++(2M) with 20
steps and DDPM with 100 steps, next to the real-vs-real floor.

Usage::

    .venv/bin/python benchmarks/digits_lr_sweep.py      # -> docs/benchmarks/digits_lr_sweep.md (about 6 min)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, machine_lines, write_text_atomic  # noqa: E402

from genflow.metrics import digits_fd, digits_fd_floor, load_digits_feature_net  # noqa: E402
from genflow.pipeline import load_trained, sample_with, train  # noqa: E402
from genflow.recipe import load_recipe  # noqa: E402

SETTINGS = [("v", 0.002), ("v", 0.004), ("v", 0.008), ("eps", 0.008)]
SOLVERS = [{"name": "dpm_solver_pp", "order": 2, "steps": 20}, {"name": "ddpm", "steps": 100}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    start = time.perf_counter()
    net = load_digits_feature_net()
    rows = []
    for kind, lr in SETTINGS:
        overrides = [f"trainer.steps={args.steps}", "trainer.checkpoint_every=0", f"trainer.lr={lr}",
                     f"model.parameterization={kind}"]  # fmt: skip
        with tempfile.TemporaryDirectory() as run:
            train(load_recipe("digits_dit", overrides), out_dir=run, progress=False, resume=False)
            process, model = load_trained(run)
            fds = [digits_fd(sample_with(process, model, s, args.n, seed=0, batch_size=500).samples.clamp(-1, 1),
                             net=net) for s in SOLVERS]  # fmt: skip
        rows.append((kind, lr, *fds))
        print(f"{kind:4s} lr {lr:<6} FD dpm++2M-20 {fds[0]:7.2f}  ddpm-100 {fds[1]:7.2f}", flush=True)
    floor = digits_fd_floor(args.n, generator=torch.Generator().manual_seed(1), net=net)
    lines = [
        "# digits_dit: learning rate and parameterisation sweep",
        "",
        f"`digits_dit` recipe trained {args.steps} steps per row (seed 0), EMA weights; digits FD of {args.n} "
        f"samples against the test split; real-vs-real floor at this count {floor:.2f}.",
        "",
        "| parameterisation | lr | FD, DPM-Solver++(2M) 20 steps | FD, DDPM 100 steps |",
        "|---|---:|---:|---:|",
        *[f"| {k} | {lr} | {a:.2f} | {b:.2f} |" for k, lr, a, b in rows],
        "",
        *machine_lines(),
        f"- Total time: {time.perf_counter() - start:.0f} s",
    ]
    write_text_atomic(args.out_dir / "digits_lr_sweep.md", "\n".join(lines) + "\n")
    print(f"wrote {args.out_dir / 'digits_lr_sweep.md'}")


if __name__ == "__main__":
    main()
