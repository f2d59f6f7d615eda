"""Train a deep ensemble on the digits protocol and compare it with one member, on clean and shifted digits.

The protocol (``genflow.classify.digits_protocol``, recipe ``digits_ensemble``) trains
small CIFAR-style ResNets on a fixed 500-image subset of the 8x8 digits, each from
its own seed, into ``--out/members/member-<i>/``. ``evaluate_classifier`` then scores
one member and the ensemble on the clean test split and on every shifted set
(``digits_corrupted``), with temperature scaling fitted on the validation split,
and writes tables and reliability diagrams under ``--out``.

    python examples/deep_ensemble.py            # the protocol: 4 members x 300 steps (about a minute on 2 cores)
    python examples/deep_ensemble.py --quick    # 2 members x 40 steps, a smoke run (CI runs this)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from genflow.classify import digits_protocol, evaluate_classifier, load_ensemble


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 members x 40 steps")
    parser.add_argument("--members", type=int, default=None, help="ensemble size (default 4; 2 with --quick)")
    parser.add_argument("--seed", type=int, default=0, help="protocol seed")
    parser.add_argument("--out", default="runs/example_deep_ensemble")
    args = parser.parse_args()
    members = args.members or (2 if args.quick else 4)
    out = Path(args.out)

    result = digits_protocol(args.seed, members=members, out_dir=out / "members",
                             overrides=["trainer.steps=40"] if args.quick else [])  # fmt: skip
    print(f"trained {members} members in {sum(result.seconds):.1f} s")
    ensemble = result.ensemble
    for label, model in (("1 member", ensemble.subset(1)), (f"{members} members", ensemble)):
        report = evaluate_classifier(model, out / label.replace(" ", "_"), data=result.data, title=label)
        for row in report.rows[:2]:
            print(f"{label:10s} {row['set']:14s} ACC {row['acc']:.3f}  NLL {row['nll']:.3f}  Brier {row['brier']:.3f}"
                  f"  ECE {row['ece']:.3f}  NLL(T) {row['nll_ts']:.3f}  ECE(T) {row['ece_ts']:.3f}")  # fmt: skip
        print(f"{label:10s} {report.flops:,} FLOPs/image, {report.latency_ms:.3f} ms/image; files in {report.files[0]}")

    reloaded = load_ensemble(out / "members")  # the same members, rebuilt from their checkpoints
    x = result.data.test.images[:64]
    with torch.no_grad():
        same = torch.allclose(reloaded(x), ensemble(x), atol=1e-6)
    print(f"reloaded from {out / 'members'}: {len(reloaded)} members, predictions identical: {same}")


if __name__ == "__main__":
    main()
