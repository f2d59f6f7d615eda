"""Sample a known distribution with every kind of genflow solver and check the result.

A 2-D Gaussian mixture has an exact score under any Gaussian process, so every
sampler can be compared with exact samples of the distribution it should draw.

    python examples/sample_gaussian_mixture.py [--process vp|ve|subvp] [--n 4000]
"""

from __future__ import annotations

import argparse

import torch

import genflow as gf
from genflow.metrics import sliced_wasserstein
from genflow.testing import GaussianMixture, GaussianMixtureScore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--process", default="vp", choices=["vp", "ve", "subvp"])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    process = gf.PROCESSES.create(args.process)
    mixture = GaussianMixture.isotropic(
        [0.2, 0.3, 0.5], torch.tensor([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]]), [0.4, 0.6, 0.3]
    )
    model = GaussianMixtureScore(mixture, process, parameterization="eps")
    runs = [
        ("ddpm", {}, 100),
        ("ddim", {}, 50),
        ("dpm_solver_pp", {"order": 2}, 20),
        ("rk4", {}, 10),  # probability-flow ODE, 4 model calls per step
        ("dopri5", {"rtol": 1e-4, "atol": 1e-4}, 10),  # adaptive: steps only sets output times
        ("euler_maruyama", {}, 200),  # reverse-time SDE
    ]
    print(f"process={args.process}, default grid={process.default_grid}, n={args.n}")
    for name, kwargs, steps in runs:
        sampler = gf.Sampler(process, model, gf.SOLVERS.create(name, **kwargs))
        out = sampler.sample(
            (args.n, 2), steps, generator=torch.Generator().manual_seed(args.seed), dtype=torch.float64
        )
        exact, _ = mixture.at(process, float(out.ts[-1])).sample(args.n, torch.Generator().manual_seed(args.seed + 1))
        sw = sliced_wasserstein(out.samples, exact, generator=torch.Generator().manual_seed(0))
        print(f"{name:16s} {str(kwargs):28s} NFE {out.nfe:4d}  {out.seconds:6.3f}s  SW2 to exact {float(sw):.4f}")
    a, _ = mixture.sample(args.n, torch.Generator().manual_seed(args.seed + 2))
    b, _ = mixture.sample(args.n, torch.Generator().manual_seed(args.seed + 3))
    floor = float(sliced_wasserstein(a, b, generator=torch.Generator().manual_seed(0)))
    print(f"exact vs exact SW2 (the noise floor): {floor:.4f}")


if __name__ == "__main__":
    main()
