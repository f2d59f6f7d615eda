"""Overhead of genflow's ``Solver.solve`` over calling torchdiffeq / torchsde directly.

Same field, same grid, same method, same Brownian motion: the only difference
between the two variants of each row is genflow's wrapper (input validation,
the field adapter that counts calls and clamps ``t``, the SDE time change, the
finiteness check at grid points, the :class:`~genflow.solver.base.Solution`).

Field: a random MLP vector field ``f(x, t) = 4 MLP([x, 4t]) + 2x`` on a 64-dim
state, 2 hidden layers of 256 (SiLU), batch 256, float32, under
``torch.no_grad()``. SDEs use it as the drift with the diagonal diffusion
``g(x, t) = 0.2 (1 + 0.5 tanh x)`` (state-dependent, so Milstein does real work).

Timing: the two variants are interleaved (A B, B A, A B, ...) after a warm-up,
each call timed on its own with the garbage collector off (device synchronised
on CUDA); the table reports the median per variant and the ratio of medians.

Memory: on CPU, each variant runs once under
``torch.profiler.profile(profile_memory=True)`` and the peak is the maximum of
the running sum of the allocator's alloc/free records during the solve (tensor
memory only: the bytes the CPU allocator handed out above what was allocated
before the call, including the returned trajectory). On CUDA,
``torch.cuda.max_memory_allocated`` minus ``memory_allocated`` before the call.

Usage::

    .venv/bin/python benchmarks/core_overhead.py            # full run, writes docs/benchmarks/core_overhead.md
    .venv/bin/python benchmarks/core_overhead.py --quick    # a few repeats, for a smoke test
"""

from __future__ import annotations

import argparse
import gc
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torchdiffeq
import torchsde
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, machine_lines, write_text_atomic  # noqa: E402

import genflow as gf  # noqa: E402


# --------------------------------------------------------------------------- problem
class MLPField(nn.Module):
    """``f(x, t) = scale * MLP([x, 4 t]) + 2 x``: 2 hidden layers, SiLU, fixed random weights."""

    def __init__(self, dim: int, hidden: int, seed: int, gain: float = 1.5, scale: float = 4.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.l1, self.l2, self.l3 = nn.Linear(dim + 1, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, dim)
        with torch.no_grad():
            for layer in (self.l1, self.l2, self.l3):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * gain / layer.in_features**0.5)
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=g) * 0.1)
        self.scale = scale

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1, 1).expand(x.shape[0], 1)
        h = nn.functional.silu(self.l1(torch.cat([x, 4.0 * t], dim=1)))
        h = nn.functional.silu(self.l2(h))
        return self.scale * self.l3(h) + 2.0 * x


class MLPSDE:
    """Ito SDE ``dx = f(x, t) dt + g(x, t) dW`` with the MLP drift and a diagonal diffusion."""

    def __init__(self, drift_field: MLPField) -> None:
        self.field = drift_field

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return self.field(x, t)

    def diffusion(self, x: Tensor, t: Tensor) -> Tensor:
        return 0.2 * (1.0 + 0.5 * torch.tanh(x))


class DirectSDE:
    """The same SDE written for torchsde by hand, over the uniform grid's time change.

    Solver time ``s`` in ``[0, N]`` maps to ``t = ts[0] + s h`` (``h = ts[1] - ts[0]``,
    negative for a decreasing grid); drift scaled by ``h``, diffusion by ``sqrt|h|``.
    """

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, sde: MLPSDE, ts: Tensor) -> None:
        self.sde = sde
        self.t0 = ts[0]
        self.h = ts[1] - ts[0]
        self.sqrt_h = self.h.abs().sqrt()
        self.calls = 0

    def f(self, s: Tensor, y: Tensor) -> Tensor:
        self.calls += 1
        return self.sde.drift(y, self.t0 + s * self.h) * self.h

    def g(self, s: Tensor, y: Tensor) -> Tensor:
        return self.sde.diffusion(y, self.t0 + s * self.h) * self.sqrt_h


class CountedFunc:
    """torchdiffeq-style ``func(t, y)`` around ``field(x, t)``, counting calls."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.fn = fn
        self.calls = 0

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        self.calls += 1
        return self.fn(y, t)


# --------------------------------------------------------------------------- measurement
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Seconds for one call of ``fn`` (GC off, device synchronised)."""
    gc.collect()
    gc.disable()
    try:
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        return time.perf_counter() - start, out
    finally:
        gc.enable()


def peak_memory(fn: Callable[[], Any], device: torch.device) -> int | None:
    """Peak bytes of tensor memory allocated during one call of ``fn`` above the level before it."""
    gc.collect()
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        out = fn()
        sync(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        del out
        return int(peak)
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    del out
    try:  # raw allocator records: signed nbytes per alloc (+) / free (-)
        records = [
            (e.start_ns(), e.nbytes())
            for e in prof.profiler.kineto_results.events()
            if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
        ]
    except Exception:  # private API changed: report n/a rather than a wrong number
        return None
    records.sort()
    level = peak = 0
    for _, nbytes in records:
        level += nbytes
        peak = max(peak, level)
    return peak


@dataclass
class Case:
    device: str
    method: str
    setting: str
    direct: Callable[[], tuple[Tensor, int]]
    genflow: Callable[[], tuple[Tensor, int]]
    times: dict[str, list[float]] = field(default_factory=lambda: {"direct": [], "genflow": []})
    nfe: dict[str, int] = field(default_factory=dict)
    memory: dict[str, int | None] = field(default_factory=dict)
    max_abs_diff: float = float("nan")
    sdeint_calls: dict[str, int] = field(default_factory=dict)
    supplementary: bool = False


def make_cases(device: torch.device, args: argparse.Namespace) -> list[Case]:
    dtype = torch.float32
    net = MLPField(args.dim, args.hidden, seed=args.seed).to(device=device, dtype=dtype).eval()
    x0 = torch.randn(args.batch, args.dim, generator=torch.Generator().manual_seed(args.seed + 1), dtype=dtype).to(
        device
    )
    ts = torch.linspace(1.0, 0.0, args.steps + 1, dtype=dtype, device=device)
    cases: list[Case] = []

    def ode_case(method: str, setting: str, solver_kwargs: dict[str, Any], odeint_kwargs: dict[str, Any]) -> Case:
        solver = gf.SOLVERS.create(method, **solver_kwargs)

        def direct() -> tuple[Tensor, int]:
            func = CountedFunc(net)
            ys = torchdiffeq.odeint(func, x0, ts, method=method, **odeint_kwargs)
            return ys[-1], func.calls

        def genflow() -> tuple[Tensor, int]:
            sol = solver.solve(net, x0, ts)
            return sol.x, sol.nfe

        return Case(str(device), method, setting, direct, genflow)

    cases.append(ode_case("euler", f"{args.steps} steps", {}, {}))
    cases.append(ode_case("rk4", f"{args.steps} steps", {}, {}))
    tol = args.tol
    cases.append(ode_case("dopri5", f"rtol=atol={tol:g}", {"rtol": tol, "atol": tol}, {"rtol": tol, "atol": tol}))
    # genflow passes options={"step_t": ts[-1:]} to torchdiffeq (forces the last step onto ts[-1]); that changes
    # the step sequence. The same options in the direct call isolate the wrapper's own overhead.
    step_t_case = ode_case(
        "dopri5",
        f"rtol=atol={tol:g}; direct also with options=step_t",
        {"rtol": tol, "atol": tol},
        {"rtol": tol, "atol": tol, "options": {"step_t": ts[-1:]}},
    )
    step_t_case.supplementary = True
    cases.append(step_t_case)

    sde = MLPSDE(net)

    def sde_case(name: str, torchsde_method: str, n: int, supplementary: bool = False) -> Case:
        solver = gf.SOLVERS.create(name)
        ts = torch.linspace(1.0, 0.0, n + 1, dtype=dtype, device=device)

        def seed_from(generator: torch.Generator) -> int:  # the same draw genflow makes
            return int(torch.randint(0, 2**62, (), generator=generator))

        def direct() -> tuple[Tensor, int]:
            adapter = DirectSDE(sde, ts)
            bm = torchsde.BrownianInterval(
                t0=0.0,
                t1=float(n),
                size=tuple(x0.shape),
                dtype=dtype,
                device=device,
                entropy=seed_from(torch.Generator().manual_seed(args.seed + 2)),
                dt=1.0,
                levy_area_approximation="none",
            )
            s_grid = torch.arange(n + 1, dtype=dtype, device=device)
            ys = torchsde.sdeint(adapter, x0, s_grid, bm=bm, method=torchsde_method, dt=1.0)
            return ys[-1], adapter.calls

        def genflow() -> tuple[Tensor, int]:
            sol = solver.solve(sde, x0, ts, generator=torch.Generator().manual_seed(args.seed + 2))
            return sol.x, sol.nfe

        h = 1.0 / n
        setting = f"{n} steps, uniform" + (" (h = 2^-k, exact in float32)" if h == 2.0 ** round(math.log2(h)) else "")
        case = Case(str(device), name, setting, direct, genflow)
        case.supplementary = supplementary
        return case

    cases.append(sde_case("euler_maruyama", "euler", args.steps))
    cases.append(sde_case("milstein", "milstein", args.steps))
    # A grid whose float32 steps are exactly equal (h = 1/64): genflow's uniformity test passes and it takes its
    # one-torchsde-call path. See the notes in the report.
    dyadic = 2 ** max(1, round(math.log2(args.steps)))
    if dyadic != args.steps:
        cases.append(sde_case("euler_maruyama", "euler", dyadic, supplementary=True))
        cases.append(sde_case("milstein", "milstein", dyadic, supplementary=True))
    return cases


class CountSdeint:
    """Counts calls of ``torchsde.sdeint`` (genflow calls it through the module attribute) while active."""

    def __enter__(self) -> "CountSdeint":
        self.calls = 0
        self._orig = torchsde.sdeint

        def counted(*a: Any, **k: Any) -> Any:
            self.calls += 1
            return self._orig(*a, **k)

        torchsde.sdeint = counted
        return self

    def __exit__(self, *exc: Any) -> None:
        torchsde.sdeint = self._orig


def run_case(case: Case, args: argparse.Namespace, device: torch.device) -> None:
    variants = {"direct": case.direct, "genflow": case.genflow}
    with torch.no_grad():
        outs = {}
        for name, fn in variants.items():  # warm-up (and the outputs for the equivalence check)
            for _ in range(args.warmup):
                outs[name] = fn()
        case.nfe = {name: out[1] for name, out in outs.items()}
        if case.method in ("euler_maruyama", "milstein"):
            for name, fn in variants.items():  # instrumented call, outside the timed loop
                with CountSdeint() as counter:
                    fn()
                case.sdeint_calls[name] = counter.calls
        case.max_abs_diff = float((outs["direct"][0] - outs["genflow"][0]).abs().max())
        for r in range(args.repeats):
            order = ("direct", "genflow") if r % 2 == 0 else ("genflow", "direct")
            for name in order:
                seconds, _ = time_call(variants[name], device)
                case.times[name].append(seconds)
        for name, fn in variants.items():
            case.memory[name] = peak_memory(fn, device)


# --------------------------------------------------------------------------- report
def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    return f"{n / 2**20:.2f} MiB"


def quartiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def finiteness_check_cost(args: argparse.Namespace, device: torch.device) -> tuple[float, int | None]:
    """Median ms and peak bytes of genflow's ``raise_if_nonfinite`` on a trajectory the size of the ODE rows'."""
    from genflow.solver.base import raise_if_nonfinite

    ys = torch.randn(args.steps + 1, args.batch, args.dim, generator=torch.Generator().manual_seed(args.seed)).to(
        device
    )
    ts = torch.linspace(1.0, 0.0, args.steps + 1, device=device)
    fn = lambda: raise_if_nonfinite(ys, ts)  # noqa: E731
    fn()
    times = [time_call(fn, device)[0] for _ in range(max(5, args.repeats))]
    return statistics.median(times) * 1e3, peak_memory(fn, device)


def table_rows(cases: list[Case]) -> tuple[list[str], list[tuple[Case, float, float, bool]]]:
    lines = [
        "| device | method | setting | NFE direct / genflow | backend calls direct / genflow | direct ms | genflow ms "
        "| ratio | paired | min ratio | <= 1.05? | peak mem direct | peak mem genflow | max \\|diff\\| |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    verdicts = []
    for c in cases:
        d, g = c.times["direct"], c.times["genflow"]
        md, mg = statistics.median(d) * 1e3, statistics.median(g) * 1e3
        (d25, d75), (g25, g75) = quartiles([v * 1e3 for v in d]), quartiles([v * 1e3 for v in g])
        ratio = mg / md
        paired = statistics.median(b / a for a, b in zip(d, g, strict=True))
        min_ratio = min(g) / min(d)
        ok = ratio <= 1.05
        verdicts.append((c, ratio, paired, ok))
        backend = (
            f"sdeint {c.sdeint_calls['direct']} / {c.sdeint_calls['genflow']}" if c.sdeint_calls else "odeint 1 / 1"
        )
        lines.append(
            f"| {c.device} | {c.method} | {c.setting} | {c.nfe['direct']} / {c.nfe['genflow']} | {backend} "
            f"| {md:.2f} [{d25:.2f}-{d75:.2f}] | {mg:.2f} [{g25:.2f}-{g75:.2f}] "
            f"| {ratio:.3f} | {paired:.3f} | {min_ratio:.3f} "
            f"| {'yes' if ok else '**no**'} | {fmt_bytes(c.memory['direct'])} | {fmt_bytes(c.memory['genflow'])} "
            f"| {c.max_abs_diff:.2e} |"
        )
    return lines, verdicts


def report(
    cases: list[Case],
    args: argparse.Namespace,
    devices: list[str],
    wall: float,
    check_cost: dict[str, tuple[float, int | None]],
) -> str:
    traj_mib = (args.steps + 1) * args.batch * args.dim * 4 / 2**20
    lines = [
        "# Core overhead: genflow `Solver.solve` vs torchdiffeq / torchsde called directly",
        "",
        "Generated by `benchmarks/core_overhead.py`"
        + (" (**--quick run**: few repeats, indicative only)" if args.quick else "")
        + f"; total wall time {wall:.0f} s. Do not edit by hand.",
        "",
        "## Setup",
        "",
        f"- Field: `f(x, t) = 4 MLP([x, 4t]) + 2x`, MLP {args.dim} -> {args.hidden} -> {args.hidden} -> {args.dim} "
        f"(SiLU, fixed random weights, seed {args.seed}), state batch {args.batch} x {args.dim}, float32, "
        "under `torch.no_grad()`.",
        f"- ODE: grid `linspace(1, 0, {args.steps + 1})` (float32, decreasing, like a sampler); euler and rk4 step "
        f"over it, dopri5 (rtol = atol = {args.tol:g}) returns the solution at its points. Direct: "
        "`torchdiffeq.odeint(func(t, y), y0, ts, method=...)`; genflow: `SOLVERS.create(name).solve(field, x, ts)`.",
        "- SDE: the MLP as drift, diffusion `0.2 (1 + 0.5 tanh x)` (diagonal, Ito), uniform grid "
        "`linspace(1, 0, N + 1)`. Direct: `torchsde.sdeint` on a hand-written SDE over the time change "
        "`s in [0, N]`, `ts = arange(N + 1)`, "
        "`dt = 1`, drift scaled by `h`, diffusion by `sqrt|h|`, `BrownianInterval(t0=0, t1=N, dt=1, "
        "levy_area_approximation='none')` seeded with the same entropy genflow draws from its generator, so both "
        "variants integrate the same Brownian path.",
        f"- Timing: {args.warmup} warm-up call(s) per variant, then {args.repeats} interleaved repeats "
        "(direct/genflow, genflow/direct, ...), each call timed alone with GC off (device synchronised on CUDA). "
        "Reported: median per variant, IQR in brackets; ratio = median genflow / median direct; "
        "paired = median over repeats of the per-repeat ratio; min ratio = fastest genflow call / fastest direct "
        "call (the least noise-sensitive estimate on a loaded machine).",
        "- Peak memory: on CPU, one call per variant under `torch.profiler.profile(profile_memory=True)`; the "
        "peak of the running sum of the CPU allocator's alloc/free records during the call (tensor memory only, "
        "above what was allocated before the call; includes the returned trajectory, "
        f"{args.steps + 1} x {args.batch} x {args.dim} float32 = {traj_mib:.2f} MiB for the ODE rows). On CUDA, "
        "`torch.cuda.max_memory_allocated` after `reset_peak_memory_stats`, minus the level before the call.",
        "- backend calls: how many times `torchdiffeq.odeint` / `torchsde.sdeint` ran per solve (counted in one "
        "extra, untimed call).",
        "- `max |diff|`: largest absolute difference between the final states of the two variants (0 = bit-identical).",
        "",
        "## Machine",
        "",
        *machine_lines(devices),
        "",
        "## Results (the comparison asked for)",
        "",
    ]
    main_lines, verdicts = table_rows([c for c in cases if not c.supplementary])
    lines += main_lines
    supp = [c for c in cases if c.supplementary]
    if supp:
        supp_lines, _ = table_rows(supp)
        lines += [
            "",
            "## Supplementary rows (diagnostics)",
            "",
            "- dopri5 with `options={'step_t': ts[-1:]}` in the direct call too: genflow passes this option (it forces "
            "the last step onto `ts[-1]`), which changes the adaptive step sequence and so the NFE; with it on both "
            "sides the row measures the wrapper alone.",
            "- SDE rows on a grid with a power-of-two number of steps: the float32 steps of `linspace(1, 0, 2^k + 1)` "
            "are exactly equal, so genflow's uniform-grid test passes and it makes one `torchsde.sdeint` call.",
            "",
            *supp_lines,
        ]
    lines += ["", "## Cost of genflow's finiteness check alone", ""]
    for dev, (ms, mem) in check_cost.items():
        lines.append(
            f"- {dev}: `raise_if_nonfinite` on a {args.steps + 1} x {args.batch} x {args.dim} float32 trajectory "
            f"(what every ODE solve above checks): median {ms:.2f} ms, peak temporary memory {fmt_bytes(mem)}."
        )
    held = [f"{c.method} ({c.device})" for c, _, _, ok in verdicts if ok]
    missed = [f"{c.method} ({c.device}, ratio {r:.3f})" for c, r, _, ok in verdicts if not ok]
    lines += [
        "",
        "## Verdict",
        "",
        "Target: genflow / direct <= 1.05 (ratio of medians) for every method in the main table.",
        "",
        f"- Held for: {', '.join(held) if held else 'none'}.",
        f"- Missed for: {', '.join(missed) if missed else 'none'}.",
        "",
        "Notes:",
        "",
        "- NFE direct vs genflow for SDEs: torchsde's `sdeint` calls `f` and `g` once to check shapes before "
        "solving; genflow answers that probe without calling the model, so each direct `sdeint` call costs one extra "
        "drift evaluation (shown in the NFE column).",
    ]
    nfe_differs = [
        c for c in cases if not c.supplementary and c.nfe["direct"] != c.nfe["genflow"] and not c.sdeint_calls
    ]
    for c in nfe_differs:
        lines.append(
            f"- {c.method} ({c.device}): the two variants took different numbers of field evaluations "
            f"({c.nfe['direct']} direct, {c.nfe['genflow']} genflow) because genflow passes `step_t`, so its ratio "
            "mixes solver work with wrapper overhead; the supplementary row with `step_t` on both sides isolates "
            "the overhead."
        )
    split = [c for c in cases if c.sdeint_calls and c.sdeint_calls.get("genflow", 1) > 1]
    if split:
        lines.append(
            "- On the float32 `linspace` grid genflow made "
            + ", ".join(sorted({f"{c.sdeint_calls['genflow']}" for c in split}))
            + " `torchsde.sdeint` calls per solve instead of one: its uniform-grid test "
            "(`torch.allclose(steps, steps[0], rtol=1e-9, atol=1e-12)` in `genflow/solver/sde.py`) is tighter than "
            "float32 round-off, so the grid is treated as non-uniform and solved interval by interval (a probe, a "
            "Brownian query set-up and a state list per interval, then a `torch.stack`). That is where the SDE "
            "rows' extra time and memory come from, and why their results differ from the direct solve by round-off "
            "in `t` (amplified by this expanding field). Compare the power-of-two rows."
        )
    lines += [
        "- The machine may be shared (see the load average above); interleaving spreads noise over both variants "
        "but individual medians can still move between runs by a few per cent.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repeats (smoke test)")
    parser.add_argument(
        "--repeats", type=int, default=None, help="interleaved repeats per variant (default 21, quick 5)"
    )
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=50, help="grid steps")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--tol", type=float, default=1e-5, help="dopri5 rtol = atol")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: steadier timings on a shared machine; 0 = torch default)",
    )
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CPU, plus CUDA when available"
    )
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 5 if args.quick else 21
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    if args.device == "auto":
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    else:
        devices = [args.device]
    start = time.perf_counter()
    all_cases: list[Case] = []
    check_cost: dict[str, tuple[float, int | None]] = {}
    for dev in devices:
        device = torch.device(dev)
        with torch.no_grad():
            check_cost[dev] = finiteness_check_cost(args, device)
        for case in make_cases(device, args):
            run_case(case, args, device)
            d, g = statistics.median(case.times["direct"]), statistics.median(case.times["genflow"])
            print(
                f"[{dev}] {case.method:15s} {case.setting[:28]:28s} direct {d * 1e3:8.2f} ms  "
                f"genflow {g * 1e3:8.2f} ms  ratio {g / d:.3f}  "
                f"nfe {case.nfe}  mem {fmt_bytes(case.memory['direct'])} / {fmt_bytes(case.memory['genflow'])}  "
                f"diff {case.max_abs_diff:.1e}",
                flush=True,
            )
            all_cases.append(case)
    text = report(all_cases, args, devices, time.perf_counter() - start, check_cost)
    out = args.out_dir / "core_overhead.md"
    write_text_atomic(out, text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
