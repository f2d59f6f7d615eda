"""Ensemble distillation on the digits protocol: one member, the 4-member ensemble and distilled students.

For each protocol seed the four teachers are trained (:func:`genflow.classify.digits_protocol`, into a
temporary run folder the students reference), then eight students are distilled with the
``distill_digits`` recipe (:func:`genflow.distill.distill_student`): a single ResNet-8 and a
BatchEnsemble-4 of it, each with no perturbation (plain KD), Gaussian noise, ODS and ConfODS. Every model
is scored by :func:`genflow.classify.evaluate_classifier` on the clean test split and the pooled shifted set
(ACC, NLL, ECE, NLL after temperature scaling fitted on the validation split), with its parameters, FLOPs
and CPU latency; a BatchEnsemble's members (and the teachers) also by their diversity (pairwise
disagreement and mean pairwise KL, :func:`genflow.distill.member_diversity`). Results: mean +- std over
seeds, and the issue's targets checked on them. Per-model results are cached in ``--cache`` (JSON) so an
interrupted run continues where it stopped.

Usage::

    .venv/bin/python benchmarks/distill.py               # 3 seeds -> docs/benchmarks/distill.md (+ distill.png)
    .venv/bin/python benchmarks/distill.py --quick       # 1 seed, 20-step teachers and students, printed only
    # seeds in parallel, then one report from their caches:
    .venv/bin/python benchmarks/distill.py --seeds 1 --cache s1.json --out s1.md    # (and 0, 2 alike)
    .venv/bin/python benchmarks/distill.py --cached s0.json s1.json s2.json --report-only
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, machine_lines, save_figure_atomic, write_text_atomic  # noqa: E402

from genflow.classify import Ensemble, digits_protocol, evaluate_classifier, predict_log_probs  # noqa: E402
from genflow.distill import distill_student, member_diversity  # noqa: E402
from genflow.metrics import disagreement, kl  # noqa: E402

PERTURBATIONS = ("none", "gaussian", "ods", "confods")
STUDENTS = {"single": "single student", "batch_ensemble": "BatchEnsemble-4"}
METRICS = ("acc", "nll", "ece", "nll_ts")


def _diversity(model: torch.nn.Module, data) -> dict[str, dict[str, float]]:
    sets = {"clean": data.test, "shifted": data.shifted_pooled()}
    if isinstance(model, Ensemble) and len(model) > 1:
        out = {}
        for name, d in sets.items():
            probs = torch.stack([predict_log_probs(m, d).exp() for m in model.members])
            pairs = [(i, j) for i in range(len(probs)) for j in range(len(probs)) if i != j]
            out[name] = {"disagreement": disagreement(probs),
                         "kl": statistics.fmean(kl(probs[i], probs[j]) for i, j in pairs)}  # fmt: skip
        return out
    if hasattr(model, "member_logits") and not isinstance(model, Ensemble):
        return {name: member_diversity(model, d) for name, d in sets.items()}
    return {}


def score(model: torch.nn.Module, data, seconds: float | None) -> dict:
    report = evaluate_classifier(model, data=data)
    rows = {"clean": report.rows[0], "shifted": report.rows[1]}
    return {**{name: {m: row[m] for m in METRICS} for name, row in rows.items()},
            "diversity": _diversity(model, data), "params": sum(p.numel() for p in model.parameters()),
            "flops": report.flops, "latency_ms": report.latency_ms, "seconds": seconds}  # fmt: skip


ALL_LABELS = ["one member", "4-member ensemble"] + [f"{s}/{p}" for s in STUDENTS for p in PERTURBATIONS]


def measure_seed(seed: int, overrides: list[str], cache: dict, save, labels: list[str] = ALL_LABELS) -> dict:
    """Teachers and every student (or those in ``labels``) of one seed (results already in ``cache`` are reused)."""
    results = cache.setdefault(str(seed), {})
    with tempfile.TemporaryDirectory() as tmp:
        teachers = None
        for label in labels:
            if label in results:
                continue
            if teachers is None:
                teachers = digits_protocol(seed, members=4, out_dir=Path(tmp) / "teachers", overrides=overrides)
            if label == "one member":
                results[label] = score(teachers.ensemble.subset(1), teachers.data, teachers.seconds[0])
            elif label == "4-member ensemble":
                results[label] = score(teachers.ensemble, teachers.data, sum(teachers.seconds))
            else:
                student, perturbation = label.split("/")
                if "@" in perturbation:  # "confods@0.125": another step than the default
                    name, step = perturbation.split("@")
                    perturbation = {"name": name, "step": float(step)}
                trained = distill_student(Path(tmp) / "teachers", student=student, perturbation=perturbation,
                                          seed=1000 * seed + 100, overrides=overrides)  # fmt: skip
                results[label] = score(trained.model, teachers.data, trained.seconds)
            print(f"seed {seed} {label}: clean NLL {results[label]['clean']['nll']:.4f}, shifted NLL "
                  f"{results[label]['shifted']['nll']:.4f}", flush=True)  # fmt: skip
            save()
    return results


def _values(runs: list[dict], label: str, *path: str) -> list[float]:
    """One value per seed that measured ``label`` (a partial run may lack some)."""
    out = []
    for run in (r for r in runs if label in r):
        value = run[label]
        for key in path:
            value = value[key]
        out.append(float(value))
    return out


def _pm(values: list[float], digits: int = 3) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} +- {std:.{digits}f}"


def _beats(runs: list[dict], a: str, b: str, *path: str, lower: bool = True) -> bool:
    """``a`` better than ``b`` beyond the error bars (mean +- std intervals do not overlap)."""
    va, vb = _values(runs, a, *path), _values(runs, b, *path)
    sa = statistics.stdev(va) if len(va) > 1 else 0.0
    sb = statistics.stdev(vb) if len(vb) > 1 else 0.0
    ma, mb = statistics.fmean(va), statistics.fmean(vb)
    return ma + sa < mb - sb if lower else ma - sa > mb + sb


def labels_of(runs: list[dict]) -> list[str]:
    """Every model measured in any seed, in measuring order."""
    return list(dict.fromkeys(label for run in runs for label in run))


def _name(runs: list[dict], label: str) -> str:
    count = sum(label in r for r in runs)
    return label.replace("/", ", ") + (f" ({count} of {len(runs)} seeds)" if count < len(runs) else "")


def tables(runs: list[dict]) -> list[str]:
    lines = []
    one_flops = statistics.fmean(_values(runs, "one member", "flops") or [float("nan")])
    titles = {"clean": "Clean test split (368 images)",
              "shifted": "Shifted: digits_corrupted, 4 kinds x 3 severities pooled (4,416 images)"}  # fmt: skip
    for name, title in titles.items():
        lines += [f"### {title}", "", "| model | ACC | NLL | ECE | NLL (T-scaled) | member disagreement | member KL |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for label in labels_of(runs):
            cells = [_pm(_values(runs, label, name, m), 4 if m != "acc" else 3) for m in METRICS]
            if next(r for r in runs if label in r)[label]["diversity"]:
                cells += [_pm(_values(runs, label, "diversity", name, k), 4) for k in ("disagreement", "kl")]
            else:
                cells += ["-", "-"]
            lines.append(f"| {_name(runs, label)} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["### Cost", "", "| model | parameters | FLOPs / image | x one member | latency ms / image (batch 256) "
              "| training s |", "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for label in labels_of(runs):
        flops = statistics.fmean(_values(runs, label, "flops"))
        params = next(r for r in runs if label in r)[label]["params"]
        lines.append(f"| {_name(runs, label)} | {int(params):,} | {int(flops):,} | "
                     f"{flops / one_flops:.2f} | {_pm(_values(runs, label, 'latency_ms'), 4)} | "
                     f"{_pm(_values(runs, label, 'seconds'), 1)} |")  # fmt: skip
    return lines


def _ods_variants(measured: set[str], student: str) -> list[str]:
    """The ODS / ConfODS perturbations measured for ``student`` (``ods``, ``confods``, ``confods@0.125``, ...)."""
    prefix = f"{student}/"
    return [lab[len(prefix) :] for lab in sorted(measured) if lab.startswith(prefix)
            and lab[len(prefix) :].split("@")[0] in ("ods", "confods")]  # fmt: skip


def targets(runs: list[dict]) -> list[str]:
    lines = ["", "## Targets", ""]
    measured = set(labels_of(runs))
    for student, title in STUDENTS.items():
        for name in ("clean", "shifted"):
            checks = []
            for ods in _ods_variants(measured, student):
                for base in ("none", "gaussian"):
                    a, b = f"{student}/{ods}", f"{student}/{base}"
                    if a in measured and b in measured:
                        checks.append(f"{ods} vs {base}: {'yes' if _beats(runs, a, b, name, 'nll') else 'no'}")
            lines.append(f"- {title}, {name} NLL, ODS/ConfODS below plain KD / Gaussian beyond the error bars: "
                         + ("; ".join(checks) or "not measured") + ".")  # fmt: skip
    one_flops = statistics.fmean(_values(runs, "one member", "flops") or [float("nan")])
    for name in ("clean", "shifted") if {"one member", "4-member ensemble"} <= measured else ():
        one = statistics.fmean(_values(runs, "one member", name, "nll"))
        ens = statistics.fmean(_values(runs, "4-member ensemble", name, "nll"))
        cheap = [label for label in labels_of(runs) if "/" in label
                 and statistics.fmean(_values(runs, label, "flops")) <= 1.3 * one_flops]  # fmt: skip
        if cheap:
            best = min(cheap, key=lambda lab: statistics.fmean(_values(runs, lab, name, "nll")))
            closed = (one - statistics.fmean(_values(runs, best, name, "nll"))) / (one - ens)
            lines.append(f"- {name}: best student at <= 1.3x one member's FLOPs is {best.replace('/', ', ')}; it "
                         f"closes {100 * closed:.0f}% of the NLL gap between one member ({one:.4f}) and the "
                         f"ensemble ({ens:.4f}): target (>= 50%) {'met' if closed >= 0.5 else 'missed'}.")  # fmt: skip
    for name in ("clean", "shifted"):
        checks = []
        for ods in _ods_variants(measured, "batch_ensemble"):
            a, b = f"batch_ensemble/{ods}", "batch_ensemble/none"
            if a in measured and b in measured:
                for k in ("disagreement", "kl"):
                    higher = _beats(runs, a, b, "diversity", name, k, lower=False)
                    mean_higher = (statistics.fmean(_values(runs, a, "diversity", name, k))
                                   > statistics.fmean(_values(runs, b, "diversity", name, k)))  # fmt: skip
                    checks.append(f"{ods} {k}: {'yes' if higher else 'higher mean only' if mean_higher else 'no'}")
        lines.append(f"- {name}: BatchEnsemble members more diverse with ODS than with plain KD (beyond the error "
                     "bars): " + ("; ".join(checks) or "not measured") + ".")  # fmt: skip
    return lines


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = labels_of(runs)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, name in zip(axes, ("clean", "shifted"), strict=True):
        means = [statistics.fmean(_values(runs, lab, name, "nll")) for lab in labels]
        stds = [statistics.stdev(v) if len(v := _values(runs, lab, name, "nll")) > 1 else 0.0 for lab in labels]
        ax.barh([lab.replace("/", ", ") for lab in labels], means, xerr=stds, color="tab:blue")
        ax.set_title(f"NLL, {name} (mean +- std over {len(runs)} seeds)")
        ax.invert_yaxis()
    axes[1].set_yticklabels([])
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="protocol seeds")
    parser.add_argument("--quick", action="store_true", help="1 seed, 20-step teachers and students, printed only")
    parser.add_argument("--override", action="append", default=[], help="recipe override for teachers and students")
    parser.add_argument("--cache", default=str(OUT_DIR / "distill.json"), help="per-model results (JSON)")
    parser.add_argument("--out", default=str(OUT_DIR / "distill.md"))
    parser.add_argument("--cached", nargs="*", default=[], help="further cache files to merge in (e.g. one per seed "
                        "from parallel runs)")
    parser.add_argument("--labels", nargs="*", default=ALL_LABELS,
                        help="measure only these models (e.g. one student per process, caches merged later); "
                        "STUDENT/ods@STEP or STUDENT/confods@STEP measures another step")
    parser.add_argument("--remark", default="", help="a paragraph for the report's head (how this run was made)")
    parser.add_argument("--report-only", action="store_true", help="report what the cache holds; train nothing")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    overrides = ["trainer.steps=20", "trainer.validate_every=0"] if args.quick else list(args.override)
    cache_path = Path(args.cache)
    cache = {} if args.quick or not cache_path.exists() else json.loads(cache_path.read_text())
    key = json.dumps(overrides)
    if cache.get("overrides", key) != key:
        raise SystemExit(f"{cache_path} holds results for overrides {cache['overrides']}; use another --cache")
    cache["overrides"] = key
    for extra in args.cached:
        other = json.loads(Path(extra).read_text())
        if other.get("overrides") != key:
            raise SystemExit(f"{extra} holds results for overrides {other.get('overrides')}, not {key}")
        for seed, results in other.items():
            if seed != "overrides":
                cache.setdefault(seed, {}).update(results)

    def save() -> None:
        if not args.quick:
            write_text_atomic(cache_path, json.dumps(cache, indent=1))

    if args.report_only:
        save()  # the merged caches, as one file
        runs = [cache[str(seed)] for seed in seeds if str(seed) in cache]
        seeds = [seed for seed in seeds if str(seed) in cache]
    else:
        runs = [measure_seed(seed, overrides, cache, save, args.labels) for seed in seeds]
    body = [
        "# Ensemble distillation with ODS / ConfODS on the digits protocol", "",
        f"Mean +- std over protocol seeds {', '.join(map(str, seeds))}. Teachers: the digits protocol's 4 "
        "ResNet-8 members (`digits_ensemble`). Students: recipe `distill_digits` (alpha 0.9, tau 4, 300 steps, "
        "the teachers' data and schedule); a single ResNet-8 is matched to the ensemble mean, a BatchEnsemble-4 "
        "of it member i to teacher i. Perturbations as in the recipe's defaults and `genflow.distill`: "
        "Gaussian `sigma`, ODS / ConfODS step `eta` (see docs/distillation.md). Member diversity: pairwise "
        "disagreement and mean pairwise KL between the members' predictions (the teachers for the ensemble, "
        "the fast-weight members for a BatchEnsemble). Generated by `benchmarks/distill.py`.", "",
        *tables(runs), *targets(runs), "", "![NLL](distill.png)", "", "## Machine", "", *machine_lines(),
    ]  # fmt: skip
    if args.remark:
        body[3:3] = ["", args.remark]
    if overrides:
        body[3:3] = ["", f"Recipe overrides (a reduced run): `{' '.join(overrides)}`."]
    if args.quick:
        print("\n".join(body))
        return
    plot(runs, Path(args.out).with_suffix(".png"))
    write_text_atomic(args.out, "\n".join(body) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
