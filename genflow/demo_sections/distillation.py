"""Demo section: the demo's digits ensemble distilled into one network and into a BatchEnsemble (genflow.distill)."""

from __future__ import annotations

from typing import Any

from genflow.demo_sections.context import DemoContext

TITLE = "Ensemble distillation with ODS perturbations"

QUICK_STEPS = 20
FULL_STEPS = 200  # three students within the section's ~90 s budget (the benchmark trains 300 steps)


def _plot(rows: list[tuple[str, dict[str, Any]]], path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genflow.io import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    names = [name for name, _ in rows]
    for ax, (key, label) in zip(axes, (("clean", "clean test"), ("shifted", "shifted test (all)")), strict=True):
        ax.barh(names, [r[key]["nll"] for _, r in rows], color="tab:blue")
        ax.set_title(f"NLL, {label}")
        ax.invert_yaxis()
    axes[1].set_yticklabels([])
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def section(ctx: DemoContext) -> list[str]:
    """Distil ``ctx.ensemble()`` with plain KD and with ConfODS; a table of NLL / ECE / diversity and a bar plot."""
    from genflow.classify import evaluate_classifier
    from genflow.distill import distill_student, member_diversity

    protocol = ctx.ensemble()
    teachers, data, members = ctx.out_dir / "ensemble", protocol.data, len(protocol.ensemble)
    steps = QUICK_STEPS if ctx.quick else FULL_STEPS
    overrides = [f"trainer.steps={steps}"]
    models: list[tuple[str, Any]] = [("one member", protocol.ensemble.subset(1)),
                                     (f"{members}-member ensemble", protocol.ensemble)]  # fmt: skip
    students = [("single", "none"), ("single", "confods"), ("batch_ensemble", "confods")]
    for student, perturbation in students:
        result = distill_student(teachers, student=student, perturbation=perturbation, seed=ctx.seed + 100,
                                 overrides=overrides)  # fmt: skip
        models.append((f"{student.replace('_', ' ')} student, {perturbation}", result.model))
    rows, lines = [], []
    for name, model in models:
        report = evaluate_classifier(model, data=data).rows
        row = {"clean": report[0], "shifted": report[1]}
        rows.append((name, row))
        diversity = member_diversity(model, data.shifted_pooled()) if "batch" in name else None
        div = f"{diversity['disagreement']:.3f} / {diversity['kl']:.3f}" if diversity else "-"
        clean, shifted = row["clean"], row["shifted"]
        lines.append(f"| {name} | {clean['acc']:.3f} | {clean['nll']:.3f} | {clean['ece']:.3f} | {shifted['acc']:.3f} "
                     f"| {shifted['nll']:.3f} | {div} | {model.flops(1):,} |")  # fmt: skip
    _plot(rows, ctx.out_dir / "distillation_nll.png")
    length = f"{steps} steps (quick mode: a smoke run, not a result)" if ctx.quick else f"{steps} steps"
    return [
        f"The demo's {members}-member digits ensemble (the teachers, `{teachers.name}/member-<i>/`) distilled with "
        f"the `ensemble_distillation` objective ({length} per student, recipe `distill_digits`): a single ResNet-8 "
        "matched to the ensemble mean, and a BatchEnsemble whose member i is matched to teacher i; plain KD "
        "against KD on ConfODS-perturbed inputs (`genflow.distill`, docs/distillation.md). Diversity: pairwise "
        "disagreement / KL of the BatchEnsemble's members on the shifted set. Full comparison over three seeds: "
        "docs/benchmarks/distill.md.",
        "",
        "| model | clean ACC | clean NLL | clean ECE | shifted ACC | shifted NLL | diversity | FLOPs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *lines,
        "",
        "![NLL of the teachers and the students](distillation_nll.png)",
    ]
