"""Distil a deep ensemble into one network and into a BatchEnsemble, with and without ODS perturbations.

Trains its own teachers (the digits protocol, ``genflow.classify.digits_protocol``) into
``--out/teachers/member-<i>/``, then distils them with the ``ensemble_distillation``
objective (``genflow.distill``): a single student matched to the ensemble mean, and a
BatchEnsemble student whose member i is matched to teacher i, each with plain KD and
with ConfODS-perturbed inputs. Prints ACC / NLL / ECE on the clean and shifted test
sets, the BatchEnsemble members' diversity and every model's FLOPs.

    python examples/ensemble_distillation.py            # 4 teachers x 300 steps, students 300 steps (minutes)
    python examples/ensemble_distillation.py --quick    # 2 teachers x 40 steps, students 30 steps (CI runs this)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from genflow.classify import digits_protocol, evaluate_classifier
from genflow.distill import distill_student, member_diversity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 teachers x 40 steps, students 30 steps")
    parser.add_argument("--seed", type=int, default=0, help="protocol seed")
    parser.add_argument("--out", default="runs/example_ensemble_distillation")
    args = parser.parse_args()
    out = Path(args.out)
    members = 2 if args.quick else 4
    teachers = digits_protocol(args.seed, members=members, out_dir=out / "teachers",
                               overrides=["trainer.steps=40"] if args.quick else [])  # fmt: skip
    data = teachers.data
    overrides = ["trainer.steps=30"] if args.quick else []

    def report(label: str, model) -> None:
        rows = evaluate_classifier(model, data=data).rows
        line = "  ".join(f"{r['set'][:7]}: ACC {r['acc']:.3f} NLL {r['nll']:.3f} ECE {r['ece']:.3f}" for r in rows[:2])
        print(f"{label:32s} {line}  {model.flops(1):>10,} FLOPs")

    report("one member", teachers.ensemble.subset(1))
    report(f"{members}-member ensemble", teachers.ensemble)
    for student in ("single", "batch_ensemble"):
        for perturbation in ("none", "confods"):
            result = distill_student(out / "teachers", student=student, perturbation=perturbation,
                                     seed=100 + args.seed, overrides=overrides)  # fmt: skip
            report(f"{student} student, {perturbation}", result.model)
            if student == "batch_ensemble":
                diversity = member_diversity(result.model, data.shifted_pooled())
                print(f"{'':32s} members on shifted data: disagreement {diversity['disagreement']:.3f}, "
                      f"KL {diversity['kl']:.4f}; trained in {result.seconds:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
