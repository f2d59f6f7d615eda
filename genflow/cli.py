"""The ``genflow`` command: ``train``, ``sample``, ``evaluate`` and ``demo``.

``genflow demo`` is the main job: it trains a small DiT with denoising score
matching on scikit-learn's bundled 8x8 digits, samples it with DDPM, DDIM,
DPM-Solver++ and an adaptive ODE solver, measures digits FD against the real
test split (next to the real-vs-real floor) and writes ``runs/demo/report.md``
with a sample grid. It also re-checks the samplers on an analytic Gaussian
mixture whose score is exact.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from genflow.errors import GenflowError

__all__ = ["main", "build_parser"]

DEMO = ["trainer.steps=4000", "trainer.checkpoint_every=1000"]  # the recipe's 12000 steps take about 8 minutes
QUICK_DEMO = ["trainer.steps=600", "trainer.checkpoint_every=300", "trainer.warmup_steps=50", "trainer.log_every=50"]


# ----------------------------------------------------------------------------------------- helpers
def _save_grid(samples: torch.Tensor, path: Path, *, value_range: tuple[float, float] = (-1.0, 1.0), ncol: int = 16):
    """Save images ``(n, C, H, W)`` (C = 1 or 3) as a PNG grid, or 2-D points as a scatter plot, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genflow.io import atomic_path

    x = samples.detach().float().cpu()
    if x.ndim == 2 and x.shape[1] == 2:
        fig, ax = plt.subplots(figsize=(4, 4))
        ax.scatter(x[:, 0].numpy(), x[:, 1].numpy(), s=2)
        ax.set_aspect("equal")
    else:
        lo, hi = value_range
        x = ((x - lo) / (hi - lo)).clamp(0, 1)
        n = min(x.shape[0], ncol * 8)
        rows = (n + ncol - 1) // ncol
        fig, axes = plt.subplots(rows, ncol, figsize=(ncol * 0.5, rows * 0.5))
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < n:
                img = x[i].permute(1, 2, 0).squeeze(-1)
                ax.imshow(img.numpy(), cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
        fig.subplots_adjust(wspace=0.05, hspace=0.05, left=0, right=1, top=1, bottom=0)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def _table(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(row[c]) for c in columns) + " |")
    return lines


def _evaluate_digits(process, model, solvers, n, seed, batch_size) -> list[dict[str, Any]]:
    """Sample with each solver spec and measure digits FD against the test split."""
    from genflow.metrics import digits_fd, load_digits_feature_net
    from genflow.pipeline import sample_with, solver_label

    net = load_digits_feature_net()  # loaded once for every solver
    rows = []
    for spec in solvers:
        out = sample_with(process, model, spec, n, seed=seed, batch_size=batch_size)
        fd = digits_fd(out.samples.clamp(-1, 1), reference="test", value_range="generation", net=net)
        rows.append(
            {"solver": solver_label(spec), "steps": spec["steps"], "NFE": out.nfe,
             "seconds": round(out.seconds, 2), "digits FD": round(fd, 2), "_samples": out.samples}
        )  # fmt: skip
        print(f"{rows[-1]['solver']:40s} NFE {out.nfe:4d}  {out.seconds:6.2f} s  digits FD {fd:8.2f}", flush=True)
    return rows


# -------------------------------------------------------------------------------------- commands
def _cmd_train(args: argparse.Namespace) -> int:
    from genflow.pipeline import train
    from genflow.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    trainer = train(recipe, out_dir=args.out, progress=not args.no_progress)
    print(f"trained {trainer.step} steps; checkpoints in {trainer.out_dir}")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from genflow.io import atomic_path
    from genflow.pipeline import load_trained, sample_with

    process, model = load_trained(args.checkpoint)
    spec = {"name": args.solver, "steps": args.steps, **json.loads(args.solver_args)}
    out = sample_with(process, model, spec, args.n, seed=args.seed, batch_size=args.batch_size)
    print(f"{args.n} samples, NFE {out.nfe}, {out.seconds:.2f} s")
    if args.out:
        _save_grid(out.samples, Path(args.out))
        print(f"grid written to {args.out}")
    if args.save:
        from safetensors.torch import save_file

        with atomic_path(args.save) as tmp:
            save_file({"samples": out.samples.contiguous()}, str(tmp))
        print(f"samples written to {args.save}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from genflow.io import write_text_atomic
    from genflow.metrics import digits_fd_floor
    from genflow.pipeline import load_trained
    from genflow.train import latest_checkpoint

    process, model = load_trained(args.checkpoint)
    folder = Path(args.checkpoint)
    step = int((folder if folder.name.startswith("step-") else latest_checkpoint(folder)).name.split("-")[1])
    solvers = json.loads(args.solvers) if args.solvers else _default_solvers(args.checkpoint)
    rows = _evaluate_digits(process, model, solvers, args.n, args.seed, args.batch_size)
    floor = digits_fd_floor(args.n, generator=torch.Generator().manual_seed(args.seed))
    print(f"real-vs-real floor (train vs test, {args.n} images): {floor:.2f}")
    result = {"checkpoint_step": step, "n": args.n, "floor": floor,
              "rows": [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]}  # fmt: skip
    if args.out:
        write_text_atomic(args.out, json.dumps(result, indent=1))
        print(f"results written to {args.out}")
    return 0


def _default_solvers(checkpoint: str) -> list[dict[str, Any]]:
    """The solvers of the run's own recipe (saved by ``genflow train``), else the digits_dit recipe's."""
    from genflow.pipeline import run_recipe
    from genflow.recipe import load_recipe

    recipe = run_recipe(checkpoint) or load_recipe("digits_dit").config
    return recipe["sample"]["solvers"]


def _analytic_section(seed: int, n: int) -> list[str]:
    """The samplers on a 2-D Gaussian mixture with its exact score: a check of the core, not of training."""
    import genflow as gf
    from genflow.metrics import sliced_wasserstein
    from genflow.testing import GaussianMixture, GaussianMixtureScore

    mixture = GaussianMixture.isotropic(
        [0.2, 0.3, 0.5], torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]]), [0.4, 0.6, 0.3]
    )
    process = gf.VPProcess()
    model = GaussianMixtureScore(mixture, process, parameterization="eps")
    rows = []
    for name, kwargs, steps in [("ddpm", {}, 100), ("ddim", {}, 50), ("dpm_solver_pp", {"order": 2}, 20)]:
        out = gf.Sampler(process, model, gf.SOLVERS.create(name, **kwargs)).sample(
            (n, 2), steps, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
        )
        exact, _ = mixture.at(process, float(out.ts[-1])).sample(n, torch.Generator().manual_seed(seed + 1))
        sw = float(sliced_wasserstein(out.samples, exact, generator=torch.Generator().manual_seed(0)))
        rows.append(
            {"solver": name + (f"(order={kwargs['order']})" if kwargs else ""), "NFE": out.nfe, "SW2": f"{sw:.4f}"}
        )
    a, _ = mixture.sample(n, torch.Generator().manual_seed(seed + 2))
    b, _ = mixture.sample(n, torch.Generator().manual_seed(seed + 3))
    floor = float(sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(0)))
    return [
        "## Core check: exact score of a 2-D Gaussian mixture",
        "",
        f"Sliced 2-Wasserstein distance to exact samples ({n} each); exact-vs-exact floor {floor:.4f}.",
        "",
        *_table(rows, ["solver", "NFE", "SW2"]),
    ]


def _cmd_demo(args: argparse.Namespace) -> int:
    from genflow.io import write_text_atomic
    from genflow.metrics import digits_fd_floor
    from genflow.pipeline import load_trained, train
    from genflow.recipe import load_recipe

    start = time.perf_counter()
    out_dir = Path(args.out)
    run_dir = out_dir / "train"
    if not args.resume and run_dir.exists():
        shutil.rmtree(run_dir)
    recipe = load_recipe("digits_dit", [*(QUICK_DEMO if args.quick else DEMO), f"seed={args.seed}", *args.override])
    print(
        f"training {recipe.config['model']['name']} on digits for {recipe.config['trainer']['steps']} steps", flush=True
    )
    trainer = train(recipe, out_dir=run_dir, progress=not args.no_progress)
    train_seconds = time.perf_counter() - start
    process, model = load_trained(run_dir)
    sample_cfg = recipe.config["sample"]
    rows = _evaluate_digits(process, model, sample_cfg["solvers"], sample_cfg["n"], args.seed, sample_cfg["batch_size"])
    floor = digits_fd_floor(sample_cfg["n"], generator=torch.Generator().manual_seed(args.seed))
    best = min(rows, key=lambda r: r["digits FD"])
    _save_grid(best["_samples"], out_dir / "samples.png")
    last_loss = trainer.step and json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["loss"]
    lines = [
        "# genflow demo: a DiT on the bundled 8x8 digits",
        "",
        f"Recipe `digits_dit`{' (--quick)' if args.quick else ''}: {trainer.step} steps of denoising score matching "
        f"({recipe.config['process']['name']} process, {recipe.config['model']['parameterization']}-prediction "
        f"{recipe.config['model']['name']}), batch {recipe.config['trainer']['batch_size']}, EMA weights; "
        f"final training loss {last_loss:.4f}; training took {train_seconds:.0f} s.",
        "",
        f"Digits FD: Frechet distance in the features of genflow's shipped digits classifier between "
        f"{sample_cfg['n']} samples and the real test split. Real-vs-real floor ({sample_cfg['n']} real train digits "
        f"against the same test split): **{floor:.2f}**. Lower is better; the floor is what real data scores "
        "(at this sample count it varies by about +-30% between subsets; see docs/benchmarks/digits_fd_vs_nfe.md).",
        "",
        *_table(rows, ["solver", "steps", "NFE", "seconds", "digits FD"]),
        "",
        f"Samples from the best row ({best['solver']}):",
        "",
        "![samples](samples.png)",
        "",
        *_analytic_section(args.seed, 1000 if args.quick else 4000),
        "",
        f"Command: `genflow demo{' --quick' if args.quick else ''} --seed {args.seed}"
        f"{''.join(f' --override {o}' for o in args.override)}`; "
        f"total {time.perf_counter() - start:.0f} s.",
    ]
    write_text_atomic(out_dir / "report.md", "\n".join(lines) + "\n")
    print(f"real-vs-real floor {floor:.2f}\nreport written to {out_dir / 'report.md'}")
    return 0


# ---------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``genflow`` command."""
    parser = argparse.ArgumentParser(
        prog="genflow", description="genflow: fast generative-model inference on one ODE/SDE layer."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="train a small DiT on the bundled digits, sample it with four solvers, write a report",
        description="Train a DiT with denoising score matching on scikit-learn's 8x8 digits, sample it with DDPM, "
        "DDIM, DPM-Solver++ and dopri5, measure digits FD, and write OUT/report.md with a sample grid "
        "(about 3 minutes on 2 CPU cores; --quick under a minute).",
    )
    demo.add_argument("--quick", action="store_true", help="600 training steps instead of 4000 (the recipe has 12000)")
    demo.add_argument("--seed", type=int, default=0, help="seed of training and sampling (default 0)")
    demo.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    demo.add_argument("--resume", action="store_true", help="continue OUT/train instead of starting afresh")
    demo.add_argument("--no-progress", action="store_true", help="no progress bar")
    demo.add_argument(
        "--override", action="append", default=[], metavar="KEY=VALUE",
        help="override a key of the digits_dit recipe, e.g. --override trainer.steps=2000 (repeatable)",
    )  # fmt: skip
    demo.set_defaults(func=_cmd_demo)

    tr = sub.add_parser(
        "train",
        help="train a model from a recipe",
        description="Train from RECIPE (a shipped recipe name such as digits_dit, or a YAML file). Override any "
        "key as section.key=value (parsed as YAML), e.g. trainer.steps=200 model.depth=2. Resumes from the "
        "latest checkpoint in the output folder.",
    )
    tr.add_argument("recipe", help="shipped recipe name (digits_dit, digits_flow) or path to a YAML file")
    tr.add_argument("overrides", nargs="*", help="section.key=value overrides")
    tr.add_argument("--out", default=None, help="output folder (default: the recipe's out_dir)")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.set_defaults(func=_cmd_train)

    sa = sub.add_parser(
        "sample",
        help="sample a trained checkpoint with any solver",
        description="Load CHECKPOINT (a step-XXXXXXXX folder or a run folder: its latest), sample it with the "
        "registered solver NAME (EMA weights), and write a PNG grid and/or the samples as safetensors.",
    )
    sa.add_argument("checkpoint")
    sa.add_argument("--solver", default="dpm_solver_pp", help="registered solver name (default dpm_solver_pp)")
    sa.add_argument("--solver-args", default="{}", help="solver arguments as JSON, e.g. '{\"order\": 3}'")
    sa.add_argument("--steps", type=int, default=20, help="grid steps (default 20)")
    sa.add_argument("--n", type=int, default=64, help="number of samples (default 64)")
    sa.add_argument("--batch-size", type=int, default=None, help="generate in chunks of this size")
    sa.add_argument("--seed", type=int, default=0)
    sa.add_argument("--out", default="samples.png", help="PNG grid to write ('' for none)")
    sa.add_argument("--save", default=None, help="also write the samples to this .safetensors file")
    sa.set_defaults(func=_cmd_sample)

    ev = sub.add_parser(
        "evaluate",
        help="digits FD of a trained digits checkpoint per solver, with the real-vs-real floor",
        description="Sample CHECKPOINT with each solver (default: the digits_dit recipe's list) and report digits "
        "FD against the real test split, next to the train-vs-test floor at the same sample count.",
    )
    ev.add_argument("checkpoint")
    ev.add_argument(
        "--solvers", default=None, help='JSON list of solver specs, e.g. \'[{"name": "ddim", "steps": 50}]\''
    )
    ev.add_argument("--n", type=int, default=368, help="samples per solver (default 368, the test split size)")
    ev.add_argument("--batch-size", type=int, default=512)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--out", default=None, help="write the results as JSON here")
    ev.set_defaults(func=_cmd_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``genflow`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GenflowError as err:  # bad input: a short message, not a traceback
        print(f"genflow {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
