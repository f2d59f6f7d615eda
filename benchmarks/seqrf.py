"""Sequential reflow against rectified flow and reflow: quality vs NFE, straightness and training cost.

For each data set (2-D toys ``checkerboard`` and ``eight_gaussians`` with an
MLP; the bundled 8x8 digits with a DiT) the script trains, side by side, with
the same seed and the same number of pairs:

* **1-RF**: flow matching on the linear interpolant (the teacher);
* **2-RF**: reflow on the teacher's full-trajectory pairs (dopri5, tol 1e-4), initialised from the teacher;
* **SeqRF K** for K in ``--seqrf``: sequential reflow on the teacher's K-segment pairs, the segment index
  added to the backbone's time embedding (``SegmentConditionedModel``), initialised from the teacher;
* **2-RF distilled K**: ``Reflow(distill=True)`` on the 2-RF model's K-segment pairs (NFE = K; K = 1 is the
  classic one-step distillation), the fair baseline for
* **SeqRF K distilled**: ``SequentialReflow(distill=True)`` on the SeqRF K model's own pairs (NFE = K).

Quality: sliced Wasserstein-2 distance (``--projections`` directions) of
``--n`` samples against ``--n`` fresh data points, next to the data-vs-data floor
(two fresh draws); digits: digits FD of ``--n-digits`` samples against the test
split, next to its real-vs-real floor at the same count. Every model is sampled
from the same noise with Euler steps (segment-restart Euler for SeqRF, the
number of steps split over its segments) at NFE in {1, 2, 4, 8, 16} (SeqRF K
needs NFE >= K), and the teacher also with adaptive dopri5 (tol 1e-4).
Straightness ``E_t E || v(x_t, t) - chord ||^2`` is measured along 32-step
trajectories, with the chord of the whole trajectory ("global") and, per
segment of the model's own segments, with each segment's chord ("own
segments"; the same as global for one segment). Cost: teacher network
evaluations per pair and in total, and training steps times batch size.

Usage::

    python benchmarks/seqrf.py                       # -> docs/benchmarks/seqrf.{md,png}
    python benchmarks/seqrf.py --quick               # smoke run: tiny sizes, toys only, no files written
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, machine_lines, save_figure_atomic, write_text_atomic  # noqa: E402

import genflow as gf  # noqa: E402
from genflow.data import NamedTensorDataset, load_digits_split, toy2d  # noqa: E402
from genflow.metrics import (  # noqa: E402
    digits_fd,
    digits_fd_floor,
    load_digits_feature_net,
    sliced_wasserstein,
    straightness,
)
from genflow.reflow import PairDataset, PairGenerator, SegmentConditionedModel, SegmentSpec  # noqa: E402
from genflow.reflow.sampler import SegmentVelocity  # noqa: E402
from genflow.reflow.stages import euler_sampler, train_stage  # noqa: E402

NFES = (1, 2, 4, 8, 16)


@dataclass
class Sizes:
    """Training and evaluation sizes of one data set."""

    teacher_steps: int
    steps: int  # 2-RF and SeqRF
    distill_steps: int
    batch: int
    lr: float
    pairs: int
    shard: int
    n_eval: int
    seqrf: tuple[int, ...]
    distill: tuple[int, ...]  # K of the distilled 2-RF models
    seqrf_distill: tuple[int, ...]  # K of the distilled SeqRF models (a subset of seqrf)
    tol: float = 1e-4  # dopri5 tolerance of the pairs and of the teacher's adaptive reference


@dataclass
class Entry:
    """One trained model and what it cost."""

    label: str
    model: Any
    segments: int
    family: str  # 1-RF, 2-RF, SeqRF, 2-RF distilled, SeqRF distilled
    pair_evals: int = 0  # per-example teacher network evaluations for its pairs (this stage only)
    pairs: int = 0
    train_examples: int = 0
    quality: dict[int, float] = field(default_factory=dict)
    straight: tuple[float, float] = (float("nan"), float("nan"))


def toy_model() -> gf.ScoreModel:
    return gf.MLPScoreNet(dim=2, hidden_size=128, depth=3, parameterization="velocity")


def digits_model() -> gf.ScoreModel:
    return gf.DiT(image_size=8, patch_size=2, in_channels=1, hidden_size=64, depth=4, num_heads=4,
                  parameterization="velocity")  # fmt: skip


def fit(model, objective, data, steps, sizes: Sizes, lr: float, seed: int):
    """Train and return the EMA model (eval mode)."""
    return train_stage(model, objective, data, steps=steps, batch_size=sizes.batch, lr=lr, lr_schedule="cosine",
                       warmup_steps=min(100, steps // 10), ema_decay=0.999, grad_clip=1.0, seed=seed)  # fmt: skip


def make_pairs(teacher, segments, data, sizes: Sizes, folder: Path, seed: int) -> PairDataset:
    gen = PairGenerator(teacher, solver=gf.Dopri5(rtol=sizes.tol, atol=sizes.tol), segments=segments,
                        data=data if segments > 1 else None,
                        event_shape=tuple(data.shape[1:]), shard_size=sizes.shard, seed=seed,
                        progress=False)  # fmt: skip
    gen.generate(folder, -(-sizes.pairs // sizes.shard))
    return PairDataset(folder)


def sample(model, segments: int, nfe: int, n: int, event: tuple[int, ...], seed: int, trajectory=False):
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        return euler_sampler(model, segments).sample((n, *event), nfe, generator=g, batch_size=1024,
                                                     return_trajectory=trajectory)  # fmt: skip


def measure_straightness(model, segments: int, event, seed: int, n: int = 128) -> tuple[float, float]:
    """(global, own-segment) straightness along 32-step trajectories of the model's own sampler."""
    out = sample(model, segments, 32, n, event, seed, trajectory=True)
    denoiser = gf.ModelDenoiser(gf.LinearInterpolant(), model)
    aware = isinstance(getattr(model, "segments", None), SegmentSpec)
    field_k = SegmentVelocity(denoiser).on_segment if aware else (lambda k: denoiser.velocity)
    ts, traj = out.ts, out.trajectory
    with torch.no_grad():
        if segments == 1:
            value = float(straightness(denoiser.velocity, traj, ts))
            return value, value
        spec = SegmentSpec.uniform(segments)
        cuts = [int((ts == b).nonzero()[0, 0]) for b in torch.tensor(spec.boundaries, dtype=ts.dtype)]
        own = sum(  # each segment's straightness, weighted by its length
            float(straightness(field_k(k), traj[a : b + 1], ts[a : b + 1])) * (ts[a] - ts[b]).item()
            for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True))
        )
        value = float(straightness(denoiser.velocity, traj, ts))  # a segment-aware model picks k from t
    return value, own


class Quality:
    """Sliced Wasserstein vs fresh data (toys) or digits FD vs the test split (digits), with its floor."""

    def __init__(self, name: str, n: int, seed: int, projections: int) -> None:
        self.name, self.n, self.seed, self.projections = name, n, seed, projections
        if name == "digits":
            self.net = load_digits_feature_net()
            self.floor = digits_fd_floor(n, generator=torch.Generator().manual_seed(seed + 7), net=self.net)
        else:
            self.fresh = toy2d(name, n, torch.Generator().manual_seed(seed + 101))
            other = toy2d(name, n, torch.Generator().manual_seed(seed + 202))
            self.floor = self(other)

    def __call__(self, samples: torch.Tensor) -> float:
        if self.name == "digits":
            return digits_fd(samples.clamp(-1, 1), net=self.net)
        g = torch.Generator().manual_seed(self.seed + 303)
        return float(sliced_wasserstein(samples, self.fresh, generator=g, projections=self.projections))


def run_dataset(name: str, sizes: Sizes, args, work: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    seed = args.seed
    if name == "digits":
        data = load_digits_split("train", value_range="generation").images
        make = digits_model
    else:
        data = toy2d(name, 20000, torch.Generator().manual_seed(seed))
        make = toy_model
    event = tuple(data.shape[1:])
    quality = Quality(name, sizes.n_eval, seed, args.projections)
    log = lambda msg: print(f"[{name} {time.perf_counter() - t0:6.0f}s] {msg}", flush=True)  # noqa: E731

    torch.manual_seed(seed)  # initial weights (the benchmark script owns the global RNG)
    teacher = fit(make(), gf.FlowMatching(), NamedTensorDataset(x=data), sizes.teacher_steps, sizes, sizes.lr, seed)
    entries = [Entry("1-RF", teacher, 1, "1-RF", train_examples=sizes.teacher_steps * sizes.batch)]
    log("teacher trained")
    with torch.no_grad():
        ref = gf.Sampler(gf.LinearInterpolant(), teacher, gf.Dopri5(rtol=sizes.tol, atol=sizes.tol)).sample(
            (sizes.n_eval, *event), 1, generator=torch.Generator().manual_seed(seed + 1), batch_size=1024
        )
    teacher_adaptive = (quality(ref.samples), ref.nfe)
    log(f"teacher dopri5: quality {teacher_adaptive[0]:.4f} at NFE {teacher_adaptive[1]}")

    def pairs_of(model, k, tag):
        p = make_pairs(model, k, data, sizes, work / name / tag, seed)
        return p, p.teacher_evaluations

    pairs1, evals1 = pairs_of(teacher, 1, "teacher_k1")
    rf2 = fit(copy.deepcopy(teacher), gf.Reflow(), pairs1, sizes.steps, sizes, sizes.lr / 2, seed)
    entries.append(Entry("2-RF", rf2, 1, "2-RF", evals1, len(pairs1), sizes.steps * sizes.batch))
    log("2-RF trained")
    seqrf: dict[int, Any] = {}
    for k in sizes.seqrf:
        pairs_k, evals_k = pairs_of(teacher, k, f"teacher_k{k}")
        student = SegmentConditionedModel(copy.deepcopy(teacher), segments=k)
        seqrf[k] = fit(student, gf.SequentialReflow(), pairs_k, sizes.steps, sizes, sizes.lr / 2, seed)
        entries.append(Entry(f"SeqRF K={k}", seqrf[k], k, "SeqRF", evals_k, len(pairs_k), sizes.steps * sizes.batch))
        log(f"SeqRF K={k} trained")
    for k in sizes.distill:
        pairs_k, evals_k = pairs_of(rf2, k, f"rf2_k{k}")
        model = fit(copy.deepcopy(rf2), gf.Reflow(distill=True), pairs_k, sizes.distill_steps, sizes, sizes.lr / 4,
                    seed)  # fmt: skip
        entries.append(Entry(f"2-RF distilled K={k}", model, k, "2-RF distilled", evals_k, len(pairs_k),
                             sizes.distill_steps * sizes.batch))  # fmt: skip
        log(f"2-RF distilled K={k} trained")
    for k in sizes.seqrf_distill:
        pairs_k, evals_k = pairs_of(seqrf[k], k, f"seqrf_k{k}")
        model = fit(copy.deepcopy(seqrf[k]), gf.SequentialReflow(distill=True), pairs_k, sizes.distill_steps, sizes,
                    sizes.lr / 4, seed)  # fmt: skip
        entries.append(Entry(f"SeqRF K={k} distilled", model, k, "SeqRF distilled", evals_k, len(pairs_k),
                             sizes.distill_steps * sizes.batch))  # fmt: skip
        log(f"SeqRF K={k} distilled trained")

    for e in entries:
        for nfe in NFES:
            if nfe >= e.segments and nfe % e.segments == 0:
                e.quality[nfe] = quality(sample(e.model, e.segments, nfe, sizes.n_eval, event, seed + 1).samples)
        e.straight = measure_straightness(e.model, e.segments, event, seed + 2)
    log("evaluated")
    return {
        "name": name,
        "floor": quality.floor,
        "metric": "digits FD" if name == "digits" else "SW2",
        "teacher_adaptive": teacher_adaptive,
        "entries": entries,
        "sizes": sizes,
        "seconds": time.perf_counter() - t0,
    }


def cost_of(entries: list[Entry], e: Entry) -> tuple[int, int]:
    """Cumulative (teacher evaluations for pairs, training examples) of the stages that lead to ``e``."""
    by = {x.label: x for x in entries}
    chain = [by["1-RF"]]
    if e.family in ("2-RF", "2-RF distilled"):
        chain.append(by["2-RF"])
    if e.family == "SeqRF distilled":
        chain.append(by[e.label.replace(" distilled", "")])
    if e.label not in [c.label for c in chain]:
        chain.append(e)
    return sum(c.pair_evals for c in chain), sum(c.train_examples for c in chain)


def targets(result: dict[str, Any]) -> list[str]:
    entries = {e.label: e for e in result["entries"]}
    lines = []
    q4 = {label: e.quality.get(4) for label, e in entries.items() if e.quality.get(4) is not None}
    seq4 = {label: v for label, v in q4.items() if label.startswith("SeqRF") and "distilled" not in label}
    best_label = min(seq4, key=seq4.get)
    met = seq4[best_label] < q4["2-RF"] and seq4[best_label] < q4["1-RF"]
    lines.append(f"- SeqRF at NFE 4 beats 2-RF and 1-RF at NFE 4: **{'met' if met else 'missed'}** (best SeqRF "
                 f"{best_label}: {seq4[best_label]:.4g}; 2-RF {q4['2-RF']:.4g}; 1-RF {q4['1-RF']:.4g}; "
                 f"every SeqRF: {', '.join(f'{k} {v:.4g}' for k, v in seq4.items())})")  # fmt: skip
    ref, ref_nfe = result["teacher_adaptive"]
    seq8 = {label: e.quality[8] for label, e in entries.items() if label.startswith("SeqRF") and 8 in e.quality
            and "distilled" not in label}  # fmt: skip
    best8 = min(seq8, key=seq8.get)
    ratio = seq8[best8] / ref
    lines.append(f"- SeqRF at NFE 8 within 15% of the 1-RF teacher at its adaptive NFE ({ref_nfe}, quality "
                 f"{ref:.4g}): **{'met' if ratio <= 1.15 else 'missed'}** (best {best8}: {seq8[best8]:.4g}, "
                 f"{ratio:.2f}x the teacher's)")  # fmt: skip
    s = {label: e.straight[0] for label, e in entries.items()}
    s_own = {label: e.straight[1] for label, e in entries.items()}
    seq_own = {label: v for label, v in s_own.items() if label.startswith("SeqRF") and "distilled" not in label}
    order = s["1-RF"] > s["2-RF"] > max(seq_own.values())
    lines.append(f"- straightness 1-RF > 2-RF > SeqRF (SeqRF on its own segments): **{'met' if order else 'missed'}**"
                 f" (1-RF {s['1-RF']:.4g}, 2-RF {s['2-RF']:.4g}, "
                 f"{', '.join(f'{k} {v:.4g}' for k, v in seq_own.items())})")  # fmt: skip
    return lines


def table(result: dict[str, Any]) -> list[str]:
    metric, entries = result["metric"], result["entries"]
    head = f"| model | {' | '.join(f'NFE {n}' for n in NFES)} | straightness global | own segments | " \
        "teacher evals (M) | train examples (M) |"  # fmt: skip
    lines = [head, "|" + " --- |" * (len(NFES) + 5)]
    for e in entries:
        cells = [f"{e.quality[n]:.4g}" if n in e.quality else "" for n in NFES]
        evals, examples = cost_of(entries, e)
        lines.append(f"| {e.label} | {' | '.join(cells)} | {e.straight[0]:.4g} | {e.straight[1]:.4g} | "
                     f"{evals / 1e6:.2f} | {examples / 1e6:.2f} |")  # fmt: skip
    ref, ref_nfe = result["teacher_adaptive"]
    lines += ["", f"{metric} (lower is better); floor (data vs data, same sample count): {result['floor']:.4g}. "
              f"1-RF teacher with dopri5 (tol {result['sizes'].tol:g}): {ref:.4g} at NFE {ref_nfe}."]  # fmt: skip
    return lines


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4), squeeze=False)
    for ax, result in zip(axes[0], results, strict=True):
        for e in result["entries"]:
            nfes = sorted(e.quality)
            style = "--" if "distilled" in e.family else "-"
            marker = "s" if len(nfes) == 1 else "o"
            ax.plot(nfes, [e.quality[n] for n in nfes], style, marker=marker, label=e.label)
        ref, ref_nfe = result["teacher_adaptive"]
        ax.axhline(ref, color="k", lw=0.8, ls=":", label=f"1-RF dopri5 (NFE {ref_nfe})")
        ax.axhline(result["floor"], color="grey", lw=0.8, label="floor (data vs data)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("NFE")
        ax.set_ylabel(result["metric"])
        ax.set_title(result["name"])
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="checkerboard,eight_gaussians,digits")
    parser.add_argument("--quick", action="store_true", help="smoke run (tiny sizes, toys); writes nothing")
    parser.add_argument("--digits-scale", type=float, default=1.0, help="multiply the digits step counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--projections", type=int, default=256)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument("--stem", default="seqrf", help="output file names: STEM.md, STEM.png, STEM.json")
    args = parser.parse_args()
    toy = Sizes(teacher_steps=1000, steps=600, distill_steps=300, batch=256, lr=2e-3, pairs=4096, shard=4096,
                n_eval=2000, seqrf=(2, 4, 8), distill=(1, 4), seqrf_distill=(2, 4, 8))  # fmt: skip
    s = args.digits_scale
    digits = Sizes(teacher_steps=int(800 * s), steps=int(400 * s), distill_steps=int(200 * s), batch=128, lr=8e-3,
                   pairs=1024, shard=1024, n_eval=368, seqrf=(2, 4, 8), distill=(4,), seqrf_distill=(4,),
                   tol=1e-3)  # fmt: skip
    if args.quick:
        toy = Sizes(200, 100, 50, 128, 2e-3, 1024, 512, 500, (2, 4), (1, 4), (4,))
        args.datasets = "checkerboard"
    results = []
    with tempfile.TemporaryDirectory() as work:
        for name in args.datasets.split(","):
            results.append(run_dataset(name, digits if name == "digits" else toy, args, Path(work)))
            for line in table(results[-1]) + targets(results[-1]):
                print(line)
    if args.quick:
        return
    lines = ["# Sequential reflow: quality vs NFE, straightness, training cost", "",
             "Produced by `benchmarks/seqrf.py` (see its docstring for the protocol).", ""]  # fmt: skip
    lines += machine_lines()
    for result in results:
        sz = result["sizes"]
        lines += ["", f"## {result['name']}", "",
                  f"Sizes: 1-RF {sz.teacher_steps} steps, 2-RF and SeqRF {sz.steps} steps, distillation "
                  f"{sz.distill_steps} steps, batch {sz.batch}; {sz.pairs} pairs a stage (dopri5, tol {sz.tol:g}); "
                  f"{sz.n_eval} samples per measurement; {result['seconds']:.0f} s.", ""]  # fmt: skip
        lines += table(result) + ["", "Targets:", ""] + targets(result)
    lines += ["", f"![quality vs NFE]({args.stem}.png)", ""]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    plot(results, args.out_dir / f"{args.stem}.png")
    write_text_atomic(args.out_dir / f"{args.stem}.md", "\n".join(lines) + "\n")
    raw = [{"name": r["name"], "floor": r["floor"], "teacher_adaptive": r["teacher_adaptive"],
            "entries": [{"label": e.label, "quality": e.quality, "straightness": e.straight,
                         "cost": cost_of(r["entries"], e)} for e in r["entries"]]} for r in results]  # fmt: skip
    write_text_atomic(args.out_dir / f"{args.stem}.json", json.dumps(raw, indent=1) + "\n")
    print(f"wrote {args.out_dir / args.stem}.md")


if __name__ == "__main__":
    main()
