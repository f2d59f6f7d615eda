"""Diffusion bridge networks: an ensemble's prediction for about the cost of one member, on the digits protocol.

Trains the protocol's members (``genflow.classify.digits_protocol``), then a DBN from
member 0 toward the ensemble (noise prediction on 5 bridge times, the member frozen,
its early feature map as conditioning), distils it into a one-step bridge, fits a
temperature on the validation split, and compares one member, the ensemble and the
bridges on the clean and shifted test sets: ACC, NLL, ECE (raw and temperature-
scaled), fidelity to the ensemble, relative FLOPs. The one-step bridge's checkpoint
(its member held by value) is reloaded at the end and gives the same predictions.

    python examples/diffusion_bridge.py            # 4 members x 300 steps, bridge 1000 steps (a few minutes)
    python examples/diffusion_bridge.py --quick    # 3 tiny members, short bridge training (CI runs this)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from genflow.bridge import load_bridge, train_dbn
from genflow.classify import digits_protocol, evaluate_classifier, predict_log_probs
from genflow.data import load_digits_split
from genflow.metrics import agreement, deep_ensemble_equivalent, kl
from genflow.recipe import load_recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 tiny members, 60 bridge steps")
    parser.add_argument("--seed", type=int, default=0, help="protocol seed")
    parser.add_argument("--out", default="runs/example_diffusion_bridge")
    args = parser.parse_args()
    out = Path(args.out)
    members = 3 if args.quick else 4
    overrides = ["trainer.steps=40", "model.width=8"] if args.quick else []
    result = digits_protocol(args.seed, members=members, overrides=overrides)
    ensemble, data = result.ensemble, result.data
    print(f"trained {members} members in {sum(result.seconds):.1f} s")

    config = load_recipe("dbn_digits").config  # the recipe's bridge settings
    trainer, distill = dict(config["trainer"]), dict(config["distill"])
    if args.quick:
        trainer["steps"], distill["steps"] = 60, 30
    images = load_digits_split("train", size=8, value_range="classification").images
    trained = train_dbn(
        ensemble.members[0], list(ensemble.members), images,
        bridge={k: v for k, v in config["model"].items() if k != "name"}, trainer=trainer, distill=distill,
        crop_copies=0 if args.quick else config["bridge"]["crop_copies"], seed=args.seed, out_dir=out / "bridge",
    )  # fmt: skip
    print(f"trained the bridge and its one-step student in {sum(trained.seconds):.1f} s")

    curve = {}
    models = [(f"ensemble of {k}", ensemble.subset(k)) for k in range(1, members + 1)]
    models += [("DBN, 5 steps", trained.bridge), ("DBN, 1 step", trained.one_step)]
    member_flops = ensemble.members[0].flops(1)
    for name, model in models:
        report = evaluate_classifier(model, out / name.replace(" ", "_").replace(",", ""), data=data, title=name)
        clean, shifted = report.rows[0], report.rows[1]
        if name.startswith("ensemble"):
            curve.setdefault("clean", []).append(clean["nll"])
        line = (f"{name:14s} clean ACC {clean['acc']:.3f} NLL {clean['nll']:.3f} ECE {clean['ece']:.3f} "
                f"ECE(T) {clean['ece_ts']:.3f} | shifted ACC {shifted['acc']:.3f} NLL {shifted['nll']:.3f} | "
                f"{report.flops / member_flops:.2f}x FLOPs")  # fmt: skip
        if name.startswith("DBN"):
            dee = deep_ensemble_equivalent(clean["nll"], curve["clean"])
            p, q = predict_log_probs(ensemble, data.test).exp(), predict_log_probs(model, data.test).exp()
            line += f" | DEE {dee:.2f}, KL to ensemble {kl(p, q):.4f}, agreement {agreement(p, q):.3f}"
        print(line)

    student = trained.one_step
    temperature = student.calibrate(data.val.images, data.val.labels)  # temperature scaling of the bridge
    calibrated = evaluate_classifier(student, data=data).rows[0]
    print(f"calibrated one-step bridge (T = {temperature:.3f} fitted on validation): clean ECE {calibrated['ece']:.3f}")

    student.output_temperature.fill_(1.0)
    reloaded = load_bridge(out / "bridge" / "bridge-0-one_step")
    x = data.test.images[:64]
    with torch.no_grad():
        same = torch.allclose(reloaded.predict(x), student.predict(x), atol=1e-6)
    print(f"reloaded the one-step bridge from {out / 'bridge'}: predictions identical: {same}")


if __name__ == "__main__":
    main()
