"""Overhead of genflow's ``Solver.solve`` over calling torchdiffeq / torchsde directly.

Same field, grid, method and Brownian path on both sides; the only difference
is genflow's wrapper (input validation, the field adapter that counts calls,
the SDE time change, the finiteness check, the ``Solution``). Two field sizes:
``cheap`` (the issue's case: MLP 65-256-64, 20 steps) and ``default`` (MLP
65-256-256-64, 50 steps); both on a 256 x 64 float32 state under
``torch.no_grad()``, with ``f(x, t) = 4 MLP([x, 4t]) + 2x``. SDEs use it as the
drift with the diagonal diffusion ``0.2 (1 + 0.5 tanh x)``.

The two variants run interleaved (A B, B A, ...), each call timed alone with
the garbage collector off; equivalence of the results is checked in
``tests/`` (here only reported as ``max |diff|``).

Usage::

    .venv/bin/python benchmarks/core_overhead.py          # writes docs/benchmarks/core_overhead.md
    .venv/bin/python benchmarks/core_overhead.py --quick  # smoke test
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchdiffeq
import torchsde
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, machine_lines, write_text_atomic  # noqa: E402

import genflow as gf  # noqa: E402
from genflow.random import seed_from  # noqa: E402

SIZES = {"cheap": {"layers": 1, "steps": 20}, "default": {"layers": 2, "steps": 50}}
Run = Callable[[], tuple[Tensor, int]]


class MLPField(nn.Module):
    """``f(x, t) = 4 MLP([x, 4t]) + 2x`` with ``layers`` hidden layers of 256 (SiLU), fixed random weights."""

    def __init__(self, dim: int = 64, hidden: int = 256, layers: int = 1, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)  # this script's weights only
        widths = [dim + 1] + [hidden] * layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        h = torch.cat([x, 4.0 * torch.as_tensor(t, dtype=x.dtype).reshape(-1, 1).expand(x.shape[0], 1)], dim=1)
        for layer in self.hidden:
            h = nn.functional.silu(layer(h))
        return 4.0 * self.out(h) + 2.0 * x


class MLPSDE:
    """``dx = f(x, t) dt + 0.2 (1 + 0.5 tanh x) dW`` (Ito, diagonal)."""

    def __init__(self, field: MLPField) -> None:
        self.field = field

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return self.field(x, t)

    def diffusion(self, x: Tensor, t: Tensor) -> Tensor:
        return 0.2 * (1.0 + 0.5 * torch.tanh(x))


class DirectSDE:
    """The same SDE written for torchsde by hand: solver time ``s`` in ``[0, N]``, ``t = ts[0] + s h``."""

    noise_type, sde_type = "diagonal", "ito"

    def __init__(self, sde: MLPSDE, ts: Tensor) -> None:
        self.sde, self.t0, self.h = sde, ts[0], ts[1] - ts[0]
        self.sqrt_h, self.calls = self.h.abs().sqrt(), 0

    def f(self, s: Tensor, y: Tensor) -> Tensor:
        self.calls += 1
        return self.sde.drift(y, self.t0 + s * self.h) * self.h

    def g(self, s: Tensor, y: Tensor) -> Tensor:
        return self.sde.diffusion(y, self.t0 + s * self.h) * self.sqrt_h


def cases(size: str, seed: int) -> list[tuple[str, str, Run, Run]]:
    """``(method, setting, direct, genflow)`` for one field size."""
    steps = SIZES[size]["steps"]
    field = MLPField(layers=SIZES[size]["layers"], seed=seed).eval()
    x0 = torch.randn(256, 64, generator=torch.Generator().manual_seed(seed + 1))
    ts = torch.linspace(1.0, 0.0, steps + 1)
    out = []

    def ode(method: str, setting: str, solver: gf.Solver, **odeint_kwargs) -> None:
        def direct() -> tuple[Tensor, int]:
            calls = []
            ys = torchdiffeq.odeint(lambda t, y: calls.append(1) or field(y, t), x0, ts, method=method, **odeint_kwargs)
            return ys[-1], len(calls)

        def genflow() -> tuple[Tensor, int]:
            sol = solver.solve(field, x0, ts)
            return sol.x, sol.nfe

        out.append((method, setting, direct, genflow))

    ode("euler", f"{steps} steps", gf.Euler())
    ode("rk4", f"{steps} steps", gf.RK4())
    ode("dopri5", "rtol=atol=1e-5, step_t both sides", gf.Dopri5(rtol=1e-5, atol=1e-5),
        rtol=1e-5, atol=1e-5, options={"step_t": ts[-1:]})  # fmt: skip
    sde = MLPSDE(field)
    for name, method in (("euler_maruyama", "euler"), ("milstein", "milstein")):
        solver = gf.SOLVERS.create(name)

        def direct(method: str = method) -> tuple[Tensor, int]:
            adapter = DirectSDE(sde, ts)
            entropy = seed_from(torch.Generator().manual_seed(seed + 2))  # the seed genflow draws
            bm = torchsde.BrownianInterval(t0=0.0, t1=float(steps), size=tuple(x0.shape), entropy=entropy, dt=1.0)
            ys = torchsde.sdeint(adapter, x0, torch.arange(steps + 1.0), bm=bm, method=method, dt=1.0)
            return ys[-1], adapter.calls

        def genflow(solver: gf.Solver = solver) -> tuple[Tensor, int]:
            sol = solver.solve(sde, x0, ts, generator=torch.Generator().manual_seed(seed + 2))
            return sol.x, sol.nfe

        out.append((name, f"{steps} steps", direct, genflow))
    return out


def measure(direct: Run, genflow: Run, repeats: int, warmup: int = 2) -> dict[str, float]:
    """Interleaved timings of the two variants; medians, ratios, NFE and the final-state difference."""
    runs = {"direct": direct, "genflow": genflow}
    with torch.no_grad():
        last = {name: [fn() for _ in range(warmup)][-1] for name, fn in runs.items()}
        times: dict[str, list[float]] = {"direct": [], "genflow": []}
        for r in range(repeats):
            for name in ("direct", "genflow") if r % 2 == 0 else ("genflow", "direct"):
                gc.collect()
                gc.disable()
                start = time.perf_counter()
                runs[name]()
                times[name].append(time.perf_counter() - start)
                gc.enable()
    d, g = times["direct"], times["genflow"]
    return {
        "direct_ms": statistics.median(d) * 1e3,
        "genflow_ms": statistics.median(g) * 1e3,
        "ratio": statistics.median(g) / statistics.median(d),
        "paired": statistics.median(b / a for a, b in zip(d, g, strict=True)),
        "min_ratio": min(g) / min(d),
        "nfe_direct": last["direct"][1],
        "nfe_genflow": last["genflow"][1],
        "max_diff": float((last["direct"][0] - last["genflow"][0]).abs().max()),
    }


TEMPLATE = """# Core overhead: genflow `Solver.solve` vs torchdiffeq / torchsde called directly

Generated by `benchmarks/core_overhead.py` in {seconds:.0f} s. Do not edit by hand.

## Setup

- Fields: `f(x, t) = 4 MLP([x, 4t]) + 2x` on a 256 x 64 float32 state, fixed random weights, `torch.no_grad()`;
  size `cheap` = MLP 65-256-64 with a 20-step grid (the cheap field of issue 6), size `default` = MLP
  65-256-256-64 with a 50-step grid. Grid `linspace(1, 0, N + 1)` (decreasing, like a sampler).
- ODE: `torchdiffeq.odeint(func, x, ts, method=...)` vs `SOLVERS.create(name).solve(field, x, ts)`; dopri5 passes
  genflow's `options={{"step_t": ts[-1:]}}` on the direct side too, so both take the same steps.
- SDE: the MLP as drift, diffusion `0.2 (1 + 0.5 tanh x)`; direct = `torchsde.sdeint` on a hand-written time change
  `s in [0, N]`, `dt = 1`, over a `BrownianInterval` seeded with the entropy genflow draws from its generator
  (same path). torchsde's shape probe calls the drift once more on the direct side (NFE column); genflow answers it
  without the field.
- Timing: {warmup} warm-up calls, then {repeats} interleaved repeats per variant (direct/genflow, genflow/direct, ...),
  GC off per call. ratio = median genflow / median direct; paired = median of per-repeat ratios; min = fastest /
  fastest. Target: ratio <= 1.05.
- Load: 1-minute load average {load_start:.2f} when measuring began ({load_note}): interleaving spreads noise over
  both variants, but single medians move by a few per cent between runs, so read the paired and min ratios too.

## Machine

{machine}

## Results

| size | method | setting | NFE direct / genflow | direct ms | genflow ms | ratio | paired | min | <= 1.05? | max diff |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

## Where the per-call time went, and what changed

Profiled with `cProfile` on the cheap field (`rk4`, `euler_maruyama`). Before: the ODE field adapter was an
`nn.Module` (its `__call__` hooks and `__setattr__` on every call, for the counter and the last times) and clamped
`t` with a tensor op on every call; the SDE time change computed `t(s)` with three tensor ops, twice per step (drift
and diffusion), and reshaped four times per step. Now: a plain `__slots__` adapter; no clamp for fixed-step methods
(they only evaluate between grid points; adaptive ones still clamp the step-size probe); `t(s)` is one fused
`torch.add` shared by the drift and diffusion of a step; no reshapes for a `(batch, d)` state. Range checks of
process times are skipped inside a solve (the grid is validated once at `solve`).

## Verdict

{verdict}
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 repeats (smoke test)")
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    repeats = 5 if args.quick else args.repeats
    torch.set_num_threads(args.threads)
    start, rows, missed = time.perf_counter(), [], []
    load_start = os.getloadavg()[0]
    load_note = "a quiet machine" if load_start < 1.0 else "**the machine was shared with other jobs**"
    machine = "\n".join(machine_lines(["cpu"]))
    for size in args.sizes:
        for method, setting, direct, genflow in cases(size, args.seed):
            m = measure(direct, genflow, repeats)
            ok = m["ratio"] <= 1.05
            missed += [] if ok else [f"{method} ({size}, ratio {m['ratio']:.3f})"]
            rows.append(
                f"| {size} | {method} | {setting} | {m['nfe_direct']} / {m['nfe_genflow']} | {m['direct_ms']:.2f} "
                f"| {m['genflow_ms']:.2f} | {m['ratio']:.3f} | {m['paired']:.3f} | {m['min_ratio']:.3f} "
                f"| {'yes' if ok else '**no**'} | {m['max_diff']:.1e} |"
            )
            print(rows[-1], flush=True)
    verdict = f"Missed for: {', '.join(missed)}." if missed else "ratio <= 1.05 for every row."
    text = TEMPLATE.format(seconds=time.perf_counter() - start, warmup=2, repeats=repeats, machine=machine,
                           load_start=load_start, load_note=load_note, rows="\n".join(rows),
                           verdict=verdict)  # fmt: skip
    write_text_atomic(args.out_dir / "core_overhead.md", text)
    print(f"wrote {args.out_dir / 'core_overhead.md'}")


if __name__ == "__main__":
    main()
