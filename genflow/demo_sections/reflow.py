"""Demo section: rectified flow, reflow and sequential reflow on a 2-D toy, sampled with few Euler steps.

The demo's digits DiT is a diffusion (VP) model, not a rectified flow, so this
section trains its own small pipeline on the 2-D checkerboard (seconds on a
CPU): a 1-rectified flow (MLP, flow matching), its teacher pairs (dopri5),
2-rectified flow on full-trajectory pairs and SeqRF on K = 4 segments, both
initialised from the teacher; then it compares them at NFE 1, 2, 4 and 8 by
sliced Wasserstein distance to fresh data, and draws the NFE-4 samples.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch

from genflow.data import NamedTensorDataset, toy2d
from genflow.demo_sections.context import DemoContext
from genflow.metrics import sliced_wasserstein
from genflow.model.mlp import MLPScoreNet
from genflow.objectives.dsm import FlowMatching
from genflow.objectives.reflow import Reflow, SequentialReflow
from genflow.reflow.model import SegmentConditionedModel
from genflow.reflow.pairs import PairGenerator
from genflow.reflow.shards import PairDataset
from genflow.reflow.stages import euler_sampler, train_stage

__all__ = ["TITLE", "section"]

TITLE = "Reflow and sequential reflow (2-D toy)"
K = 4
NFES = (1, 2, 4, 8)
# teacher steps, reflow steps, pairs, samples
QUICK = (200, 100, 512, 500)
FULL = (1500, 1000, 8192, 4000)


def section(ctx: DemoContext) -> list[str]:
    """Train 1-RF, 2-RF and SeqRF on the checkerboard; a table of SW2 against NFE and a picture at NFE 4."""
    teacher_steps, steps, n_pairs, n = QUICK if ctx.quick else FULL
    data = toy2d("checkerboard", 20000, torch.Generator().manual_seed(ctx.seed))
    fresh = toy2d("checkerboard", n, torch.Generator().manual_seed(ctx.seed + 1))
    settings = {"batch_size": 256, "lr_schedule": "cosine", "ema_decay": 0.99, "seed": ctx.seed}
    with torch.random.fork_rng(devices=[]):  # seeded initial weights, the caller's global RNG untouched
        torch.manual_seed(ctx.seed)
        mlp = MLPScoreNet(dim=2, hidden_size=128, depth=3, parameterization="velocity")
    teacher = train_stage(mlp, FlowMatching(), NamedTensorDataset(x=data), steps=teacher_steps, lr=2e-3, **settings)
    with tempfile.TemporaryDirectory() as tmp:
        pairs = {}
        for segments in (1, K):
            folder = Path(tmp) / f"k{segments}"
            PairGenerator(teacher, segments=segments, data=data, shard_size=n_pairs, seed=ctx.seed,
                          progress=False).generate(folder, 1)  # fmt: skip
            pairs[segments] = PairDataset(folder)
    rf2 = train_stage(copy.deepcopy(teacher), Reflow(), pairs[1], steps=steps, lr=1e-3, **settings)
    seqrf = train_stage(SegmentConditionedModel(copy.deepcopy(teacher), segments=K), SequentialReflow(), pairs[K],
                        steps=steps, lr=1e-3, **settings)  # fmt: skip
    models = [("1-RF (teacher)", teacher, 1), ("2-RF", rf2, 1), (f"SeqRF K={K}", seqrf, K)]
    floor = sliced_wasserstein(toy2d("checkerboard", n, torch.Generator().manual_seed(ctx.seed + 2)), fresh,
                               generator=torch.Generator().manual_seed(0))  # fmt: skip
    rows, pictures = [], {}
    for label, model, segments in models:
        cells = []
        for nfe in NFES:
            if nfe % segments:
                cells.append("n/a")
                continue
            with torch.no_grad():
                out = euler_sampler(model, segments).sample((n, 2), nfe, generator=torch.Generator().manual_seed(3))
            distance = sliced_wasserstein(out.samples, fresh, generator=torch.Generator().manual_seed(0))
            cells.append(f"{float(distance):.3f}")
            if nfe == 4:
                pictures[label] = out.samples
        rows.append(f"| {label} | {' | '.join(cells)} |")
    picture = _scatter(pictures, fresh, ctx.out_dir / "reflow_samples.png")
    mode = "quick settings (`--quick`): tiny training, expect rough numbers" if ctx.quick else "full-demo settings"
    return [
        f"A small MLP on the 2-D checkerboard, trained here in seconds ({mode}: 1-RF {teacher_steps} steps, "
        f"{n_pairs} teacher pairs a stage (dopri5), 2-RF and SeqRF {steps} steps each, initialised from the "
        "teacher); the demo's digits DiT is a diffusion model, not a rectified flow. Sliced Wasserstein-2 distance "
        f"to {n} fresh points (lower is better; data vs data: {float(floor):.3f}), Euler steps (SeqRF: steps "
        "split over its 4 segments, restarting at each boundary, so it needs NFE >= 4):",
        "",
        f"| model | {' | '.join(f'NFE {v}' for v in NFES)} |",
        "|" + " --- |" * (len(NFES) + 1),
        *rows,
        "",
        f"![samples at NFE 4]({picture})",
        "",
        "Measured comparisons at full size: docs/benchmarks/seqrf.md; the pipeline: docs/reflow.md.",
    ]


def _scatter(samples: dict[str, torch.Tensor], data: torch.Tensor, path: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genflow.io import atomic_path

    panels = {"data": data, **{f"{k}, NFE 4": v for k, v in samples.items()}}
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3), squeeze=False)
    for ax, (title, x) in zip(axes[0], panels.items(), strict=True):
        ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.5)
        ax.set_title(title, fontsize=9)
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
    return path.name
