"""Early exit on the digits: full model vs ASE staircase vs calibrated schedules, before and after fine-tuning.

Trains (or loads) the 12-block ``digits_dit_deep`` recipe (and with ``--models dit,uvit`` the
``digits_uvit`` recipe) into ``--work``, then for each backbone:

* builds the ASE staircase (the released DiT-XL/2 schedule as fractions of the depth), a
  calibrated schedule at the staircase's block-FLOP budget and one at ``--low-budget``
  (errors measured on the held-out val split, :meth:`genflow.exit.CalibratedExit.fit`);
* fine-tunes the base model through each schedule (:class:`genflow.EarlyExitDSM`, time
  embedding frozen) and times one fine-tuning step against the all-blocks step on the same batch;
* samples every (schedule, before/after fine-tuning) with DDPM, DDIM, DPM-Solver++(2M) and
  Heun on the probability-flow ODE, and reports digits FD (with the real-vs-real floor), NFE,
  FLOPs per sample (``SampleOutput.flops``), the block FLOPs kept, and wall-clock per sample
  (same batch, same run, warm-up excluded; the fastest of ``--repeats`` timings).

Usage::

    .venv/bin/python benchmarks/early_exit.py              # -> docs/benchmarks/early_exit.{md,png}
    .venv/bin/python benchmarks/early_exit.py --quick      # tiny settings, a smoke run
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, machine_lines, save_figure_atomic, write_text_atomic  # noqa: E402

import genflow as gf  # noqa: E402
from genflow.metrics import digits_fd, digits_fd_floor, load_digits_feature_net  # noqa: E402
from genflow.pipeline import load_trained, train  # noqa: E402
from genflow.recipe import load_recipe  # noqa: E402
from genflow.train import latest_checkpoint  # noqa: E402

RECIPES = {"dit": "digits_dit_deep", "uvit": "digits_uvit"}
SOLVERS = {  # label: (registered name, arguments, grid steps)
    "DDPM": ("ddpm", {}, 50),
    "DDIM": ("ddim", {}, 25),
    "DPM-Solver++(2M)": ("dpm_solver_pp", {"order": 2}, 10),
    "Heun (PF-ODE)": ("heun", {}, 10),
}


def base_model(kind: str, work: Path, steps: int) -> tuple[gf.GaussianProcess, torch.nn.Module]:
    """The trained base backbone (EMA weights), trained here when ``work`` holds no checkpoint."""
    run = work / f"{kind}_base"
    if latest_checkpoint(run) is None:
        print(f"training {RECIPES[kind]} for {steps} steps into {run}", flush=True)
        overrides = [f"trainer.steps={steps}", f"trainer.checkpoint_every={steps}", "trainer.warmup_steps=50"]
        recipe = load_recipe(RECIPES[kind], overrides)
        train(recipe, out_dir=run, progress=False)
    return load_trained(run)


def fine_tune(base: torch.nn.Module, process, policy, steps: int, batch: int, lr: float, ema: float, seed: int):
    """The EMA of a copy of ``base`` fine-tuned through ``policy`` (EarlyExitDSM, time embedding frozen)."""
    model = copy.deepcopy(base).train()
    gf.freeze_time_embedding(model)
    objective = gf.EarlyExitDSM(policy, process)
    trainer = gf.Trainer(model, objective, steps=steps, batch_size=batch, lr=lr, weight_decay=0.0, ema_decay=ema,
                         grad_clip=1.0, seed=seed, progress=False)  # fmt: skip
    trainer.fit(gf.load_digits_split("train"))
    return (trainer.ema if trainer.ema is not None else model).eval()


def step_times(base: torch.nn.Module, process, policy, batch: int, reps: int, seed: int) -> tuple[float, float]:
    """Median seconds of one forward + backward of the exit loss and of the all-blocks loss, same batch and draws."""
    model = copy.deepcopy(base).train()
    data = gf.load_digits_split("train").images[:batch]
    exit_loss, full_loss = gf.EarlyExitDSM(policy, process), gf.DenoisingScoreMatching(process)
    draws = exit_loss.draw(batch, {"x": tuple(data.shape[1:])}, torch.Generator().manual_seed(seed),
                           dtype=data.dtype, device="cpu")  # fmt: skip
    times: dict[str, list[float]] = {"exit": [], "full": []}
    for rep in range(reps + 1):
        for name, objective in (("exit", exit_loss), ("full", full_loss)):
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            objective.loss(model, {"x": data}, draws).backward()
            if rep:  # the first round warms up
                times[name].append(time.perf_counter() - start)
    return statistics.median(times["exit"]), statistics.median(times["full"])


def sampler_for(process, model, policy, solver: str) -> tuple[gf.Sampler, int]:
    name, kwargs, steps = SOLVERS[solver]
    return gf.Sampler(process, model, gf.SOLVERS.create(name, **kwargs), exit_policy=policy), steps


def model_times(process, model, solver: str) -> list[float]:
    """The times ``solver`` evaluates the model at (one small recorded run)."""
    times: list[float] = []
    hook = model.register_forward_pre_hook(lambda module, args: times.append(float(args[1].reshape(-1)[0])))
    try:
        sampler, steps = sampler_for(process, model, None, solver)
        sampler.sample((2, *model.event_shape), steps, generator=torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    return times


def fd_row(process, model, policy, solver: str, n: int, seed: int, net) -> dict:
    """FD, NFE, FLOPs per sample and the block FLOPs kept over the run's model calls."""
    sampler, steps = sampler_for(process, model, policy, solver)
    out = sampler.sample((n, *model.event_shape), steps, generator=torch.Generator().manual_seed(seed))
    exited = sampler.model if isinstance(sampler.model, gf.EarlyExitModel) else gf.EarlyExitModel(model, "full")
    lo, hi = exited.exit_costs[0], exited.exit_costs[-1]
    per_call = out.flops / (n * out.model_calls)
    return {"nfe": out.nfe, "flops": out.flops / n, "kept": (per_call - lo) / (hi - lo),
            "fd": digits_fd(out.samples.clamp(-1, 1), net=net)}  # fmt: skip


def time_rows(process, configs: list, solver: str, n: int, repeats: int, seed: int) -> list[float]:
    """Seconds per sample of each ``(model, policy)``: fastest of ``repeats`` interleaved rounds after a warm-up."""
    samplers = [sampler_for(process, model, policy, solver) for model, policy in configs]
    best = [float("inf")] * len(samplers)
    for rnd in range(repeats + 1):
        for i, (sampler, steps) in enumerate(samplers):
            out = sampler.sample((n, *configs[i][0].event_shape), steps, generator=torch.Generator().manual_seed(seed))
            if rnd:  # round 0 warms up
                best[i] = min(best[i], out.seconds / n)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="dit", help="comma list of dit, uvit")
    parser.add_argument("--work", type=Path, default=Path("runs/early_exit_bench"), help="runs are kept here")
    parser.add_argument("--base-steps", type=int, default=800, help="training steps of a base model")
    parser.add_argument("--finetune-steps", type=int, default=200)
    parser.add_argument("--finetune-lr", type=float, default=1e-4)
    parser.add_argument("--finetune-ema", type=float, default=0.99, help="EMA decay; the EMA weights are sampled")
    parser.add_argument("--batch", type=int, default=64, help="fine-tuning (and step-timing) batch")
    parser.add_argument("--low-budget", type=float, default=0.6, help="block-FLOP budget of the second calibration")
    parser.add_argument("--n", type=int, default=368, help="samples per run (368 = the test split)")
    parser.add_argument("--time-n", type=int, default=48, help="batch of the timed runs")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timed rounds (fastest kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny settings (a smoke run)")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    parser.add_argument("--name", default="early_exit", help="output file stem (NAME.md, NAME.png)")
    args = parser.parse_args()
    if args.quick:
        args.base_steps, args.finetune_steps, args.n, args.time_n, args.repeats = 50, 5, 80, 16, 1
        args.work = args.work.with_name(args.work.name + "_quick")
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    net = load_digits_feature_net()
    floor = digits_fd_floor(args.n, generator=torch.Generator().manual_seed(args.seed + 1000), net=net)
    held_out = gf.load_digits_split("val").images  # calibration data, never trained on
    report = [
        "# Early exit on the digits: full vs staircase vs calibrated schedules",
        "",
        "Generated by `benchmarks/early_exit.py` (method and API: [Early exit](../early_exit.md)).",
        "",
        f"Settings: base models trained {args.base_steps} steps (batch 128), each schedule fine-tuned "
        f"{args.finetune_steps} steps (batch {args.batch}, AdamW lr {args.finetune_lr:g}, no weight decay, time "
        f"embedding frozen, EMA {args.finetune_ema:g} sampled); {args.n} samples per row, FD against the 368 test "
        "digits; wall-clock per sample "
        f"= fastest of {args.repeats} interleaved rounds over every row of a solver (batch {args.time_n}, same seed) "
        "after a warm-up round, one intra-op thread. "
        f"Real-vs-real floor at {args.n} samples: **{floor:.2f}**.",
        "",
        "The defaults are sized for a loaded 2-core CPU (about 12 minutes a backbone): short-trained models, so "
        "absolute FD is far above the floor and rows are compared with each other. A fuller run: "
        "`--base-steps 6000 --finetune-steps 1000 --batch 128` (hours on two cores).",
        "",
        "Columns: *kept* = share of the block FLOPs run over the model calls of the run; *FLOPs* per sample "
        "(`SampleOutput.flops`); *speed-up* = full model's time / this row's time, *predicted* = full FLOPs / "
        "this row's FLOPs, *ratio* = speed-up / predicted.",
    ]
    points: dict[str, list] = {}
    for kind in args.models.split(","):
        points[kind], section = benchmark_backbone(kind, args, net, held_out, floor)
        report += section
    plot(points, floor, args.out_dir / f"{args.name}.png")
    report += ["", f"![digits FD against FLOPs per sample]({args.name}.png)", "", *machine_lines(),
               f"- Total time: {time.perf_counter() - start:.0f} s"]  # fmt: skip
    write_text_atomic(args.out_dir / f"{args.name}.md", "\n".join(report) + "\n")
    print(f"wrote {args.out_dir / args.name}.md")


def benchmark_backbone(kind: str, args, net, held_out, floor: float) -> tuple[list, list[str]]:
    """Fine-tune, sample and time one backbone; its rows and its markdown section."""
    process, base = base_model(kind, args.work, args.base_steps)
    base.eval()
    num_blocks = base.num_blocks
    costs = gf.EarlyExitModel(base, "full").exit_costs
    blocks = [costs[d + 1] - costs[d] for d in range(num_blocks)]
    staircase = gf.StaircaseExit.ase_dit_xl(relative=True)
    measured = gf.CalibratedExit.fit(base, process, held_out, budget=1.0, bins=10, block_flops=blocks,
                                     generator=torch.Generator().manual_seed(args.seed))  # fmt: skip
    edges = measured.schedule(num_blocks).edges
    t_exit, t_full = step_times(base, process, staircase, args.batch, 5, args.seed)
    tuned: dict = {}

    def tuned_model(policy, key):
        if key not in tuned:
            print(f"[{kind}] fine-tuning through {key}: {policy.schedule(num_blocks).depths}", flush=True)
            tuned[key] = fine_tune(base, process, policy, args.finetune_steps, args.batch, args.finetune_lr,
                                   args.finetune_ema, args.seed)  # fmt: skip
        return tuned[key]

    rows, schedules = [], {}
    for solver in SOLVERS:
        times = model_times(process, base, solver)
        budget = staircase.flop_fraction(num_blocks, times=times, block_flops=blocks)
        policies = {"staircase (ASE)": staircase}
        pairs = (("calibrated, same FLOPs", budget), (f"calibrated @ {args.low_budget:.0%}", args.low_budget))
        for label, b in pairs:
            policies[label] = gf.CalibratedExit.from_errors(measured.errors, edges, budget=b, block_flops=blocks,
                                                            times=times)  # fmt: skip
        configs = [("full", "-", base, None)]
        for label, policy in policies.items():
            key = str(policy.schedule(num_blocks).depths)
            schedules[f"{solver}: {label}"] = key
            configs += [(label, "before", base, policy), (label, "after", tuned_model(policy, key), policy)]
        seconds = time_rows(process, [(m, p) for _, _, m, p in configs], solver, args.time_n, args.repeats,
                            args.seed)  # fmt: skip
        for (label, stage, model, policy), sec in zip(configs, seconds, strict=True):
            row = {**fd_row(process, model, policy, solver, args.n, args.seed, net), "seconds": sec}
            rows.append((solver, label, stage, row))
            print(f"[{kind}] {solver:18s} {label:24s} {stage:6s} NFE {row['nfe']:3d} kept {row['kept']:.2f} "
                  f"FD {row['fd']:7.2f} {1e3 * sec:.3f} ms/sample", flush=True)  # fmt: skip
    return rows, backbone_section(kind, base, schedules, rows, floor, args, t_exit, t_full)


def backbone_section(kind, base, schedules, rows, floor, args, t_exit, t_full) -> list[str]:
    """The markdown of one backbone: schedules, step times, the table, the targets."""
    nb = base.num_blocks
    lines = ["", f"## {RECIPES[kind]} ({type(base).__name__}, {nb} exitable blocks)", "",
             "Depths per tenth of t (t = 0 first); the calibrated schedules are chosen per solver, over the times "
             "that solver evaluates the model at (`CalibratedExit.fit(times=...)`), the first at the FLOPs the "
             "staircase spends on that solver:", ""]  # fmt: skip
    for label, depths in schedules.items():
        lines.append(f"- {label}: `{depths}`")
    lines += [
        "",
        f"Fine-tuning step (forward + backward, batch {args.batch}, staircase): {1e3 * t_exit:.1f} ms grouped by "
        f"depth vs {1e3 * t_full:.1f} ms running every block on every sample: ratio **{t_exit / t_full:.2f}**.",
        "",
        "| solver | schedule | fine-tuned | NFE | kept | MFLOPs/sample | ms/sample | speed-up | predicted | ratio | "
        "FD | FD / full |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    full_of = {solver: row for solver, label, _, row in rows if label == "full"}
    for solver, label, stage, row in rows:
        full = full_of[solver]
        speed, predicted = full["seconds"] / row["seconds"], full["flops"] / row["flops"]
        lines.append(
            f"| {solver} | {label} | {stage} | {row['nfe']} | {row['kept']:.2f} | {row['flops'] / 1e6:.2f} | "
            f"{1e3 * row['seconds']:.3f} | {speed:.2f} | {predicted:.2f} | {speed / predicted:.2f} | "
            f"{row['fd']:.2f} | {row['fd'] / full['fd']:.2f} |"
        )
    lines += ["", f"Real-vs-real floor: {floor:.2f}.", "", "Targets:", ""]
    after = [(s, lab, r) for s, lab, st, r in rows if st == "after"]
    policies = list(dict.fromkeys(lab for _, lab, st, _ in rows if st == "after"))
    for label in policies:
        mine = [(s, r) for s, lab, r in after if lab == label]
        worst = max(r["fd"] / full_of[s]["fd"] for s, r in mine)
        kept = max(r["kept"] for _, r in mine)
        ratios = [(full_of[s]["seconds"] / r["seconds"]) / (full_of[s]["flops"] / r["flops"]) for s, r in mine]
        verdict = "met" if worst <= 1.10 and kept <= 0.72 else "missed"
        lines.append(
            f"- {label}, after fine-tuning: worst FD / full over the solvers **{worst:.2f}** (target <= 1.10), "
            f"block FLOPs kept <= {kept:.2f} (target <= 0.72): **{verdict}**; wall-clock / FLOP-predicted speed-up "
            f"{min(ratios):.2f} to {max(ratios):.2f} (target >= 0.9: **{'met' if min(ratios) >= 0.9 else 'missed'}**)."
        )
    labels = policies
    for stage in ("before", "after"):
        fd = {lab: [r["fd"] for s, lab_, st, r in rows if lab_ == lab and st == stage] for lab in labels[:2]}
        wins = sum(c <= s for s, c in zip(fd[labels[0]], fd[labels[1]], strict=True))
        lines.append(f"- Calibrated vs staircase at equal FLOPs, {stage} fine-tuning: calibrated FD <= staircase FD "
                     f"for {wins} of {len(fd[labels[0]])} solvers.")  # fmt: skip
    return lines


def plot(points: dict, floor: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    solvers = list(SOLVERS)
    fig, axes = plt.subplots(len(points), len(solvers), figsize=(3.2 * len(solvers), 3.0 * len(points)), squeeze=False)
    for i, (kind, rows) in enumerate(points.items()):
        for j, solver in enumerate(solvers):
            ax = axes[i][j]
            for _, label, stage, row in (r for r in rows if r[0] == solver):
                marker = {"full": "*", "before": "o", "after": "s"}["full" if label == "full" else stage]
                ax.scatter(row["flops"] / 1e6, row["fd"], marker=marker, label=f"{label} {stage}".replace(" -", ""))
            ax.axhline(floor, color="k", ls="--", lw=0.8)
            ax.set_title(f"{kind}: {solver}", fontsize=8)
            ax.set_xlabel("MFLOPs / sample", fontsize=7)
            ax.set_ylabel("digits FD", fontsize=7)
            ax.tick_params(labelsize=6)
    axes[0][0].legend(fontsize=5)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure_atomic(fig, path, dpi=110)


if __name__ == "__main__":
    main()
