"""Digits FD against NFE for every sampler, for the default digits DiT, next to the real-vs-real floor.

Trains the `digits_dit` recipe into ``--run`` if no checkpoint is there (the
same model `genflow demo` trains), then samples its EMA weights with every
diffusion sampler and the probability-flow ODE solvers at several NFE budgets,
and measures digits FD (Frechet distance in the features of the shipped digits
classifier) of ``--n`` samples against the real test split. The floor is the FD
of ``--n`` real train digits against the same test split, over several random
subsets (its spread is the noise of the metric at this sample count).

Target (issue 3): the default model's FD at its best sampler is within 3x the floor.

Usage::

    .venv/bin/python benchmarks/digits_fd_vs_nfe.py            # -> docs/benchmarks/digits_fd_vs_nfe.{md,png}
    .venv/bin/python benchmarks/digits_fd_vs_nfe.py --quick    # two budgets, fewer samples
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, machine_lines, save_figure_atomic, write_text_atomic  # noqa: E402

from genflow.metrics import digits_fd, digits_fd_floor, load_digits_feature_net  # noqa: E402
from genflow.pipeline import load_trained, sample_with, train  # noqa: E402
from genflow.recipe import load_recipe  # noqa: E402
from genflow.train import latest_checkpoint  # noqa: E402

# name, solver arguments, model calls per step
SAMPLERS = [
    ("ddpm", {}, 1),
    ("ddim", {}, 1),
    ("dpm_solver_pp", {"order": 1}, 1),
    ("dpm_solver_pp", {"order": 2}, 1),
    ("dpm_solver_pp", {"order": 3}, 1),
    ("euler", {}, 1),
    ("heun", {}, 2),
    ("rk4", {}, 4),
]


def label(name: str, kwargs: dict) -> str:
    return f"{name}(order={kwargs['order']})" if "order" in kwargs else name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/digits_dit", help="run folder of the digits_dit recipe")
    parser.add_argument("--n", type=int, default=1000, help="samples per measurement")
    parser.add_argument("--budgets", default="10,20,50,100", help="NFE budgets")
    parser.add_argument("--floor-draws", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    if args.quick:
        args.n, args.budgets, args.floor_draws = 300, "10,20", 3
    budgets = [int(b) for b in args.budgets.split(",")]
    start = time.perf_counter()
    if latest_checkpoint(args.run) is None:
        print(f"no checkpoint in {args.run}: training the digits_dit recipe", flush=True)
        train(load_recipe("digits_dit"), out_dir=args.run, progress=False)
    process, model = load_trained(args.run)
    step = int(latest_checkpoint(args.run).name.split("-")[1])
    net = load_digits_feature_net()
    floors = [
        digits_fd_floor(args.n, generator=torch.Generator().manual_seed(args.seed + 1000 + i), net=net)
        for i in range(args.floor_draws)
    ]
    floor = statistics.median(floors)
    print(f"floor (train vs test, n={args.n}): median {floor:.2f} over {len(floors)} draws", flush=True)
    table: dict[str, dict[int, tuple[float, float]]] = {}
    for name, kwargs, per_step in SAMPLERS:
        row = table.setdefault(label(name, kwargs), {})
        for nfe in budgets:
            steps = nfe // per_step
            if steps < 1:
                continue
            out = sample_with(process, model, {"name": name, "steps": steps, **kwargs}, args.n, seed=args.seed,
                              batch_size=500)  # fmt: skip
            fd = digits_fd(out.samples.clamp(-1, 1), net=net)
            row[out.nfe] = (fd, out.seconds)
            print(f"{label(name, kwargs):24s} NFE {out.nfe:4d}  FD {fd:8.2f}  {out.seconds:6.2f} s", flush=True)
    best_label, best_nfe = min(((k, n) for k, r in table.items() for n in r), key=lambda kn: table[kn[0]][kn[1]][0])
    best = table[best_label][best_nfe][0]
    all_nfe = sorted({n for r in table.values() for n in r})
    lines = [
        "# Digits FD against NFE for the default digits DiT",
        "",
        f"Model: the `digits_dit` recipe (DiT, VP, v-prediction) trained {step} steps, EMA weights, from `{args.run}`.",
        f"FD of {args.n} samples (clipped to [-1, 1]) against the {368} real test digits, in the features of the "
        "shipped digits classifier. Each sampler uses the process's default grid (log-SNR for VP).",
        "",
        f"Real-vs-real floor ({args.n} train digits vs the test split): median **{floor:.2f}** over "
        f"{len(floors)} random subsets (range {min(floors):.2f} to {max(floors):.2f}).",
        "",
        f"**Target: best FD within 3x the floor.** Best: {best_label} at {best_nfe} NFE, FD {best:.2f} = "
        f"{best / floor:.2f}x the floor: **{'holds' if best <= 3 * floor else 'missed'}**.",
        "",
        "| sampler | " + " | ".join(f"NFE {n}" for n in all_nfe) + " |",
        "|---|" + "---:|" * len(all_nfe),
    ]
    for key, row in table.items():
        cells = [f"{row[n][0]:.2f}" if n in row else "" for n in all_nfe]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines += ["", "![digits FD against NFE](digits_fd_vs_nfe.png)", "", *machine_lines(),
              f"- Total time: {time.perf_counter() - start:.0f} s"]  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, row in table.items():
        nfes = sorted(row)
        ax.plot(nfes, [row[n][0] for n in nfes], marker="o", label=key)
    ax.axhline(floor, color="k", ls="--", label="real-vs-real floor")
    ax.axhline(3 * floor, color="gray", ls=":", label="3x floor (target)")
    ax.set(xscale="log", yscale="log", xlabel="NFE", ylabel=f"digits FD (n={args.n})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    save_figure_atomic(fig, args.out_dir / "digits_fd_vs_nfe.png", dpi=110)
    write_text_atomic(args.out_dir / "digits_fd_vs_nfe.md", "\n".join(lines) + "\n")
    print(f"wrote {args.out_dir / 'digits_fd_vs_nfe.md'}")


if __name__ == "__main__":
    main()
