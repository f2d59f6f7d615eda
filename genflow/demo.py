"""``genflow demo``: train the digits DiT, sample it with four solvers, write ``OUT/report.md``.

It trains a small DiT with denoising score matching on scikit-learn's bundled
8x8 digits, samples it with DDPM, DDIM, DPM-Solver++ and an adaptive ODE solver,
measures digits FD against the real test split (next to the real-vs-real floor)
and writes ``OUT/report.md`` with a sample grid. It also re-checks the samplers on
an analytic Gaussian mixture whose score is exact, then runs one section a method
(:mod:`genflow.demo_sections`; ``--sections`` chooses them).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from genflow.errors import ConfigError
from genflow.outputs import check_writable_folder

__all__ = ["run_demo", "evaluate_digits", "save_grid", "check_fd_sample_count"]

DEMO = ["trainer.steps=4000", "trainer.checkpoint_every=1000"]  # the recipe's 12000 steps take about 8 minutes
QUICK_DEMO = ["trainer.steps=600", "trainer.checkpoint_every=300", "trainer.warmup_steps=50", "trainer.log_every=50"]


# ------------------------------------------------------------------------------------- checks
def check_fd_sample_count(n: Any, where: str) -> None:
    """Digits FD needs more samples than feature dimensions (a full-rank covariance) and at most the train split
    (where the real-vs-real floor draws the same number from).

    Raises:
        ConfigError: ``n`` outside ``[feature_dim + 1, len(train split)]``.
    """
    from genflow.data.digits import DIGITS_SPLIT_COUNTS
    from genflow.metrics import DigitsFeatureNet

    low, high = DigitsFeatureNet.feature_dim + 1, DIGITS_SPLIT_COUNTS["train"]
    if not isinstance(n, int) or isinstance(n, bool) or not low <= n <= high:
        raise ConfigError(
            f"{where} must be an integer in [{low}, {high}]: digits FD estimates a covariance of "
            f"{DigitsFeatureNet.feature_dim} features (fewer samples give a singular estimate, and an FD below the "
            f"real-vs-real floor), and the floor draws as many images from the {high}-image train split; got {n!r}"
        )


# ------------------------------------------------------------------------------------ helpers
def save_grid(samples: torch.Tensor, path: Path, *, value_range: tuple[float, float] = (-1.0, 1.0), ncol: int = 16):
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


def evaluate_digits(
    process: Any,
    model: Any,
    solvers: list[dict[str, Any]],
    n: int,
    seed: int,
    batch_size: int | None,
    exit_policy: Any = None,
) -> list[dict[str, Any]]:
    """Sample with each solver spec (and early-exit policy, if given) and measure digits FD against the test split.

    Every spec and ``n`` are checked before the first sample is drawn.

    Raises:
        ConfigError: a bad spec or sample count (UnknownArgumentError for an unknown solver argument).
    """
    from genflow.metrics import digits_fd, load_digits_feature_net
    from genflow.pipeline import sample_with, solver_from, solver_label

    check_fd_sample_count(n, "the sample count")
    for spec in solvers:
        solver_from(spec)
    net = load_digits_feature_net()  # loaded once for every solver
    rows = []
    for spec in solvers:
        out = sample_with(process, model, spec, n, seed=seed, batch_size=batch_size, exit_policy=exit_policy)
        fd = digits_fd(out.samples.clamp(-1, 1), reference="test", value_range="generation", net=net)
        rows.append(
            {"solver": solver_label(spec), "steps": spec["steps"], "NFE": out.nfe,
             "seconds": round(out.seconds, 2), "digits FD": round(fd, 2), "_samples": out.samples}
        )  # fmt: skip
        print(f"{rows[-1]['solver']:40s} NFE {out.nfe:4d}  {out.seconds:6.2f} s  digits FD {fd:8.2f}", flush=True)
    return rows


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


def chosen_sections(spec: str | None) -> list[str]:
    """The method sections ``--sections`` names (``all``, ``none`` or a comma-separated list), in report order.

    Raises:
        ConfigError: a name that is no section.
    """
    from genflow.demo_sections import SECTIONS

    if spec is None or spec == "all":
        return list(SECTIONS)
    if spec == "none":
        return []
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        raise ConfigError(f"--sections: unknown section(s) {unknown}; expected 'all', 'none' or names from "
                          f"{list(SECTIONS)}")  # fmt: skip
    return [name for name in SECTIONS if name in names]


def _method_sections(
    args: argparse.Namespace, names: list[str], out_dir: Path, process: Any, model: Any, run_dir: Path
) -> list[str]:
    """Run each chosen method section (``genflow.demo_sections``) and join their markdown, timed."""
    import importlib

    from genflow.demo_sections import DemoContext

    ctx = DemoContext(out_dir, args.seed, bool(args.quick), process, model, run_dir)
    lines: list[str] = []
    for name in names:
        module = importlib.import_module(f"genflow.demo_sections.{name}")
        print(f"demo section: {module.TITLE}", flush=True)
        began = time.perf_counter()
        body = module.section(ctx)
        lines += [f"## {module.TITLE}", "", *body, "", f"_Section took {time.perf_counter() - began:.0f} s._", ""]
    return lines


def run_demo(args: argparse.Namespace) -> int:
    """``genflow demo``: everything is validated before OUT/train is touched; a previous run there is
    continued (``--resume``) or replaced (``--fresh``) only when asked."""
    from genflow.io import write_text_atomic
    from genflow.metrics import digits_fd_floor
    from genflow.pipeline import build, load_trained, solver_from, train
    from genflow.recipe import load_recipe

    start = time.perf_counter()
    sections = chosen_sections(getattr(args, "sections", None))
    out_dir = Path(args.out)
    run_dir = args.run_dir = out_dir / "train"
    recipe = load_recipe("digits_dit", [*(QUICK_DEMO if args.quick else DEMO), f"seed={args.seed}", *args.override])
    check_fd_sample_count(recipe.config["sample"]["n"], "sample.n")
    for spec in recipe.config["sample"]["solvers"]:
        solver_from(spec)
    parts = build(recipe)
    check_writable_folder(out_dir, "--out")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not args.resume:
        if not args.fresh:
            raise ConfigError(
                f"{run_dir} holds a previous run; pass --resume to continue it or --fresh to replace it"
            )
        shutil.rmtree(run_dir)
    print(
        f"training {recipe.config['model']['name']} on digits for {recipe.config['trainer']['steps']} steps", flush=True
    )
    trainer = train(recipe, out_dir=run_dir, progress=not args.no_progress, parts=parts)
    train_seconds = time.perf_counter() - start
    process, model = load_trained(run_dir)
    sample_cfg = recipe.config["sample"]
    rows = evaluate_digits(process, model, sample_cfg["solvers"], sample_cfg["n"], args.seed, sample_cfg["batch_size"])
    floor = digits_fd_floor(sample_cfg["n"], generator=torch.Generator().manual_seed(args.seed))
    best = min(rows, key=lambda r: r["digits FD"])
    save_grid(best["_samples"], out_dir / "samples.png")
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
        *_method_sections(args, sections, out_dir, process, model, run_dir),
        f"Command: `genflow demo{' --quick' if args.quick else ''} --seed {args.seed}"
        f"{''.join(f' --override {o}' for o in args.override)}`; "
        f"total {time.perf_counter() - start:.0f} s.",
    ]
    write_text_atomic(out_dir / "report.md", "\n".join(lines) + "\n")
    print(f"real-vs-real floor {floor:.2f}\nreport written to {out_dir / 'report.md'}")
    return 0
