"""From a rectified flow to few-step samplers on a 2-D toy: 1-RF -> pairs -> 2-RF and SeqRF -> k-step distillation.

Trains a 1-rectified flow (flow matching on the linear interpolant) on a 2-D
toy distribution, writes its teacher pairs to disk (full trajectories for
reflow, K segments for sequential reflow), trains 2-rectified flow and SeqRF
from the teacher's weights, distils both to K Euler steps, and prints a table:
sliced Wasserstein-2 distance to fresh data at several NFE (with the
data-vs-data floor), straightness, and the teacher evaluations spent on pairs.

    python examples/sequential_reflow.py [--data checkerboard] [--segments 4] [--out runs/sequential_reflow]
    python examples/sequential_reflow.py --quick      # small sizes, under a minute on 2 CPU cores

The command-line version of the same pipeline is the toy_* recipes with
``genflow train`` and ``genflow reflow pairs`` (docs/reflow.md).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch

import genflow as gf
from genflow.data import TOY2D_NAMES, NamedTensorDataset, toy2d
from genflow.metrics import sliced_wasserstein, straightness
from genflow.reflow import PairDataset, PairGenerator, SegmentConditionedModel
from genflow.reflow.stages import euler_sampler, train_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="checkerboard", choices=TOY2D_NAMES)
    parser.add_argument("--segments", type=int, default=4, help="K: SeqRF segments and distilled NFE")
    parser.add_argument("--steps", type=int, default=3000, help="1-RF training steps (reflow stages: 3/4 of it)")
    parser.add_argument("--pairs", type=int, default=20000, help="teacher pairs per stage")
    parser.add_argument("--n", type=int, default=4000, help="samples per measurement")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/sequential_reflow", help="folder for the pair shards")
    parser.add_argument("--quick", action="store_true", help="small sizes: under a minute")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.pairs, args.n = 300, 1024, 1000
    k, out, batch = args.segments, Path(args.out), 256
    data = toy2d(args.data, 20000, torch.Generator().manual_seed(args.seed))
    fresh = toy2d(args.data, args.n, torch.Generator().manual_seed(args.seed + 1))
    process = gf.LinearInterpolant()

    def train(model, objective, pairs_or_data, steps: int, lr: float):
        return train_stage(model, objective, pairs_or_data, steps=steps, batch_size=batch, lr=lr,
                           lr_schedule="cosine", ema_decay=0.99, seed=args.seed)  # fmt: skip

    def pairs(model, segments: int, name: str) -> PairDataset:
        shards = -(-args.pairs // 1024)
        PairGenerator(model, segments=segments, data=data, shard_size=1024, seed=args.seed,
                      progress=False).generate(out / name, shards)  # fmt: skip
        return PairDataset(out / name)  # resumable: a second run reuses the shards already written

    torch.manual_seed(args.seed)  # initial weights
    mlp = gf.MLPScoreNet(dim=2, hidden_size=128, depth=3, parameterization="velocity")
    reflow_steps = args.steps * 3 // 4
    print(f"1-RF: flow matching on {args.data}, {args.steps} steps")
    teacher = train(mlp, gf.FlowMatching(), NamedTensorDataset(x=data), args.steps, 2e-3)
    full, seg = pairs(teacher, 1, "pairs_k1"), pairs(teacher, k, f"pairs_k{k}")
    print(f"pairs: {len(full)} full-trajectory, {len(seg)} over {k} segments (teacher: dopri5, tol 1e-4)")
    rf2 = train(copy.deepcopy(teacher), gf.Reflow(), full, reflow_steps, 1e-3)
    seqrf = train(SegmentConditionedModel(copy.deepcopy(teacher), segments=k), gf.SequentialReflow(), seg,
                  reflow_steps, 1e-3)  # fmt: skip
    rf2_pairs, seqrf_pairs = pairs(rf2, k, f"rf2_pairs_k{k}"), pairs(seqrf, k, f"seqrf_pairs_k{k}")
    print(f"2-RF and SeqRF K={k}: {reflow_steps} steps each; distilling both to {k} steps")
    rf2_d = train(copy.deepcopy(rf2), gf.Reflow(distill=True), rf2_pairs, reflow_steps // 2, 5e-4)
    seqrf_d = train(copy.deepcopy(seqrf), gf.SequentialReflow(distill=True), seqrf_pairs, reflow_steps // 2, 5e-4)

    models = [  # label, model, segments of its sampler, teacher evaluations spent on its pairs (all stages)
        ("1-RF", teacher, 1, 0),
        ("2-RF", rf2, 1, full.teacher_evaluations),
        (f"SeqRF K={k}", seqrf, k, seg.teacher_evaluations),
        (f"2-RF distilled K={k}", rf2_d, k, full.teacher_evaluations + rf2_pairs.teacher_evaluations),
        (f"SeqRF K={k} distilled", seqrf_d, k, seg.teacher_evaluations + seqrf_pairs.teacher_evaluations),
    ]
    nfes = [n for n in (1, 2, 4, 8, 16) if n <= 2 * k or n == 16]
    floor = sliced_wasserstein(toy2d(args.data, args.n, torch.Generator().manual_seed(args.seed + 2)), fresh,
                               generator=torch.Generator().manual_seed(0))  # fmt: skip
    print(f"\nSW2 to fresh data (floor, data vs data: {float(floor):.4f}); straightness along 32-step paths")
    print(f"| model | {' | '.join(f'NFE {n}' for n in nfes)} | straightness | teacher evals |")
    print("|" + " --- |" * (len(nfes) + 3))
    for label, model, segments, evals in models:
        cells = []
        for n in nfes:
            if n % segments:
                cells.append("")
                continue
            with torch.no_grad():
                x = euler_sampler(model, segments).sample((args.n, 2), n, generator=torch.Generator().manual_seed(3))
            x = x.samples
            cells.append(f"{float(sliced_wasserstein(x, fresh, generator=torch.Generator().manual_seed(0))):.4f}")
        path = euler_sampler(model).sample(
            (512, 2), 32, generator=torch.Generator().manual_seed(4), return_trajectory=True
        )
        with torch.no_grad():
            s = float(straightness(gf.ModelDenoiser(process, model).velocity, path.trajectory, path.ts))
        print(f"| {label} | {' | '.join(cells)} | {s:.4f} | {evals} |")
    print(f"\npair shards in {out}")


if __name__ == "__main__":
    main()
