"""Native diffusion samplers against diffusers' scheduler loops: wall-clock per step, same work.

Same eps model, same discrete schedule (``VPProcess.from_betas``, 1000 linear
betas 1e-4..0.02), same timesteps, same number of model calls, one thread:

* DDIM, 50 steps, against ``DDIMScheduler`` with ``timestep_spacing="trailing"``;
* DPM-Solver++(2M), 20 steps, against ``DPMSolverMultistepScheduler``
  (``algorithm_type="dpmsolver++"``, ``timestep_spacing="trailing"``, ``final_sigmas_type="zero"``).

diffusers' trailing timesteps ``999, 999 - 1000/N, ...`` are genflow's times
``t = (timestep + 1) / 1000`` (step ``n`` of ``N`` sits at ``t = n / N``), i.e. the
uniform grid from ``t = 1`` to ``t = 0`` with ``N`` steps; both end at
``alpha = 1``. genflow runs through the public path, ``Sampler.sample`` (prior
draw, ``ModelDenoiser``, the solver); diffusers' loop draws the same prior with
``torch.randn`` and calls the scheduler's ``step``. Models: ``0.1 x`` on a
4096 x 2 state, and a 3-256-2 MLP on ``[x, t]`` (SiLU) on 256 x 2.

Timing: the two variants are interleaved after a warm-up, each run timed on its
own; the table gives medians and the ratio of medians. The final states are
compared too (they must agree to float32 round-off).

Usage (diffusers is a benchmark-only extra, ``pip install diffusers``)::

    .venv/bin/python benchmarks/native_samplers.py     # -> docs/benchmarks/native_samplers.md
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, machine_lines, write_text_atomic  # noqa: E402

import genflow as gf  # noqa: E402

try:
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("benchmarks/native_samplers.py compares against diffusers: install it with `pip install diffusers>=0.30`")

BETAS = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")


class EpsModel(gf.ScoreModel):
    """Wraps a plain ``core(x, t)`` module as genflow's eps model (the peer calls ``core`` directly)."""

    parameterization = "eps"

    def __init__(self, core: nn.Module) -> None:
        super().__init__()
        self.core = core

    def forward(self, x: Tensor, t: Tensor, *, cond=None, exit=None) -> Tensor:
        return self.core(x, t)


class Scaled(nn.Module):
    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return 0.1 * x


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)  # benchmark script, not library code: fixed weights
        self.net = nn.Sequential(nn.Linear(3, 256), nn.SiLU(), nn.Linear(256, 2))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.net(torch.cat([x, t.reshape(-1, 1).expand(x.shape[0], 1)], dim=1))


def paper_2m() -> gf.Solver:
    """genflow's 2M without its per-sample order check: the update diffusers' scheduler runs."""
    solver = gf.DPMSolverPP(order=2)
    solver.max_second_order_decay = math.inf
    return solver


def dpm_scheduler():
    return DPMSolverMultistepScheduler(**BETAS, algorithm_type="dpmsolver++", solver_order=2,
                                       timestep_spacing="trailing", final_sigmas_type="zero")  # fmt: skip


def peer_run(scheduler, core: nn.Module, steps: int, shape: tuple[int, int], seed: int) -> Tensor:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    scheduler.set_timesteps(steps)
    for timestep in scheduler.timesteps:
        t = ((timestep + 1) / 1000.0).to(torch.float32).expand(shape[0])
        x = scheduler.step(core(x, t), timestep, x).prev_sample
    return x


def genflow_run(sampler: gf.Sampler, steps: int, shape: tuple[int, int], seed: int) -> Tensor:
    return sampler.sample(shape, steps, generator=torch.Generator().manual_seed(seed)).samples


def interleaved(a: Callable[[], Tensor], b: Callable[[], Tensor], repeats: int) -> tuple[float, float]:
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(3):
        a(), b()
    for i in range(repeats):
        for j in ((0, 1) if i % 2 == 0 else (1, 0)):
            start = time.perf_counter()
            (a, b)[j]()
            times[j].append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    torch.set_num_threads(1)
    process = gf.VPProcess.from_betas(torch.linspace(1e-4, 0.02, 1000))
    rows = []
    for model_name, core, shape in [("0.1 x", Scaled(), (4096, 2)), ("MLP 3-256-2", MLP(), (256, 2))]:
        for label, solver, scheduler, steps in [
            ("DDIM", gf.DDIM(), DDIMScheduler(**BETAS, timestep_spacing="trailing", clip_sample=False), 50),
            ("DPM-Solver++(2M), diffusers' algorithm", paper_2m(), dpm_scheduler(), 20),
            ("DPM-Solver++(2M), genflow's defaults", gf.DPMSolverPP(order=2), dpm_scheduler(), 20),
        ]:  # fmt: skip
            sampler = gf.Sampler(process, EpsModel(core), solver, grid="uniform", t_start=1.0, t_end=0.0)
            ours = functools.partial(genflow_run, sampler, steps, shape, 0)
            peer = functools.partial(peer_run, scheduler, core, steps, shape, 0)
            diff = float((ours() - peer()).abs().max())
            t_ours, t_peer = interleaved(ours, peer, args.repeats)
            rows.append((model_name, shape, label, steps, t_ours, t_peer, diff))
            print(rows[-1], flush=True)
    lines = [
        "# Native diffusion samplers against diffusers (wall-clock, same work)", "",
        "Same eps model, discrete schedule (1000 linear betas), timesteps ('trailing' = genflow's uniform grid "
        "from t = 1 to t = 0), model calls and thread count; medians of interleaved runs; genflow through "
        "`Sampler.sample` (prior draw and all). \"diffusers' algorithm\": genflow's 2M with its per-sample order "
        "check off (`max_second_order_decay = inf`), the same update as the peer's, so the results must agree to "
        "float32 round-off; \"genflow's defaults\" adds that check (a first-order step for samples whose data "
        "prediction relaxes fast; `DPMSolverPP` docstring), whose results differ by design.", "",
        "| model, state | sampler | steps | genflow ms/step | diffusers ms/step | ratio | max abs diff of results |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for model_name, shape, label, steps, t_ours, t_peer, diff in rows:
        lines.append(f"| {model_name}, {shape[0]} x {shape[1]} | {label} | {steps} | {1e3 * t_ours / steps:.3f} "
                     f"| {1e3 * t_peer / steps:.3f} | {t_ours / t_peer:.2f} | {diff:.1e} |")  # fmt: skip
    lines += ["", *machine_lines()]
    write_text_atomic(args.out_dir / "native_samplers.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
