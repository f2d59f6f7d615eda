"""Demo section: a diffusion bridge network from one member of the demo's digits ensemble to the ensemble."""

from __future__ import annotations

import torch

from genflow.demo_sections.context import DemoContext

__all__ = ["TITLE", "section"]

TITLE = "Diffusion bridge networks: an ensemble's prediction for about one member's cost"


def section(ctx: DemoContext) -> list[str]:
    """Train a DBN from member 0 toward the demo ensemble, distil it into one step, calibrate it, report."""
    from genflow.bridge import train_dbn
    from genflow.classify import evaluate_classifier, predict_log_probs
    from genflow.data import load_digits_split
    from genflow.metrics import reliability_diagram
    from genflow.recipe import load_recipe

    protocol = ctx.ensemble()
    ensemble, data = protocol.ensemble, protocol.data
    config = load_recipe("dbn_digits").config
    trainer, distill = dict(config["trainer"]), dict(config["distill"])
    copies = config["bridge"]["crop_copies"]
    if ctx.quick:
        trainer["steps"], distill["steps"], copies = 40, 20, 0
    images = load_digits_split("train", size=8, value_range="classification").images
    trained = train_dbn(
        ensemble.members[0], list(ensemble.members), images,
        bridge={k: v for k, v in config["model"].items() if k != "name"}, trainer=trainer, distill=distill,
        crop_copies=copies, seed=ctx.seed,
    )  # fmt: skip
    member_flops = ensemble.members[0].flops(1)
    rows = ["| model | clean ACC | clean NLL | clean ECE | ECE (T) | shifted ACC | shifted NLL | rel. FLOPs |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    models = [("one member", ensemble.subset(1)), (f"ensemble of {len(ensemble)}", ensemble),
              ("DBN, 5 steps", trained.bridge), ("DBN, 1 step (distilled)", trained.one_step)]  # fmt: skip
    for name, model in models:
        report = evaluate_classifier(model, data=data, title=name)
        clean, shifted = report.rows[0], report.rows[1]
        rows.append(f"| {name} | {clean['acc']:.3f} | {clean['nll']:.3f} | {clean['ece']:.3f} | "
                    f"{clean['ece_ts']:.3f} | {shifted['acc']:.3f} | {shifted['nll']:.3f} | "
                    f"{report.flops / member_flops:.2f} |")  # fmt: skip
    student = trained.one_step
    raw = predict_log_probs(student, data.test).exp()
    temperature = student.calibrate(data.val.images, data.val.labels)
    with torch.no_grad():
        scaled = student.predict(data.test.images)
    reliability_diagram(raw, data.test.labels, ctx.out_dir / "bridge_reliability_raw.png", title="one-step DBN")
    reliability_diagram(scaled, data.test.labels, ctx.out_dir / "bridge_reliability_calibrated.png",
                        title=f"one-step DBN, T = {temperature:.2f}")  # fmt: skip
    settings = (f"{trainer['steps']} bridge steps and {distill['steps']} distillation steps"
                + (" (--quick: tiny settings, numbers are not meaningful)" if ctx.quick else ""))  # fmt: skip
    return [
        f"A DBN (`genflow.bridge`, recipe `dbn_digits`) maps member 0's logits to the demo ensemble's "
        f"({len(ensemble)} members), conditioned on the member's early feature map: noise prediction on a "
        f"Brownian bridge at 5 times, then distilled into one step; {settings}, "
        f"{sum(trained.seconds):.1f} s. Clean test split and pooled shifted digits; ECE (T) after temperature "
        "scaling fitted on the validation split; FLOPs relative to one member.",
        "",
        *rows,
        "",
        f"Calibrating the one-step bridge (temperature {temperature:.2f}, fitted on the validation split):",
        "",
        "![raw](bridge_reliability_raw.png) ![calibrated](bridge_reliability_calibrated.png)",
        "",
        "Full comparison over three seeds: docs/benchmarks/dbn.md.",
    ]
