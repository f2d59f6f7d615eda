"""Diffusion bridge networks against deep ensembles on the digits protocol (mean +- std over seeds).

Per protocol seed (:func:`genflow.classify.digits_protocol`) seven members are
trained. Ensembles of the first 1-4 members give the reference curve. DBNs start
from member 0 (the ``dbn_digits`` recipe's bridge settings): one bridge toward the
ensemble of members 0-3, and two bridges (toward 0-3 and toward 0, 4, 5, 6), each
multi-step (5 steps) and distilled to one step. Every model is scored with
:func:`genflow.classify.evaluate_classifier` (clean test split and pooled shifted
set; raw and temperature-scaled with T fitted on the validation split), plus the
DEE on the ensembles' NLL curve of the same seed, fidelity to the target ensemble
(KL(ensemble || model) and agreement; for two bridges the 7-member union), FLOPs
and latency relative to one member (measured in the same run).

Usage::

    .venv/bin/python benchmarks/dbn.py            # -> docs/benchmarks/dbn.md (+ dbn_reliability.png)
    .venv/bin/python benchmarks/dbn.py --quick    # smoke run (tiny training, 1 seed), printed only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, machine_lines, save_figure_atomic, write_text_atomic  # noqa: E402

from genflow.bridge import AveragedBridges, train_dbn  # noqa: E402
from genflow.classify import Ensemble, digits_protocol, evaluate_classifier, predict_log_probs  # noqa: E402
from genflow.data import load_digits_split  # noqa: E402
from genflow.metrics import agreement, deep_ensemble_equivalent, kl, reliability_bins  # noqa: E402
from genflow.recipe import load_recipe  # noqa: E402

COLUMNS = ("acc", "nll", "brier", "ece", "nll_ts", "ece_ts", "dee", "kl", "agree")
TARGETS = ([0, 1, 2, 3], [0, 4, 5, 6])


def train_bridges(result, quick: bool, seed: int) -> dict[str, tuple]:
    """The DBN models of one seed: name -> (model, fidelity reference ensemble, training seconds)."""
    config = load_recipe("dbn_digits").config
    trainer, distill = dict(config["trainer"]), dict(config["distill"])
    if quick:
        trainer["steps"], distill["steps"] = 20, 10
    images = load_digits_split("train", size=8, value_range="classification").images
    members = list(result.ensemble.members)
    bridge_args = {k: v for k, v in config["model"].items() if k != "name"}
    trained = []
    for j, target in enumerate(TARGETS):
        start = time.perf_counter()
        out = train_dbn(members[0], [members[i] for i in target], images, bridge=bridge_args, trainer=trainer,
                        distill=distill, seed=1000 * seed + j)  # fmt: skip
        trained.append((out, time.perf_counter() - start))
    one, two = Ensemble(members[:4]), Ensemble(members)
    seconds = [s for _, s in trained]
    return {
        "DBN 1 bridge, 5 steps": (AveragedBridges([trained[0][0].bridge]), one, seconds[0]),
        "DBN 1 bridge, 1 step (distilled)": (AveragedBridges([trained[0][0].one_step]), one, seconds[0]),
        "DBN 2 bridges, 5 steps": (AveragedBridges([t.bridge for t, _ in trained]), two, sum(seconds)),
        "DBN 2 bridges, 1 step (distilled)": (AveragedBridges([t.one_step for t, _ in trained]), two, sum(seconds)),
    }


def measure_seed(seed: int, quick: bool) -> dict:
    overrides = ["trainer.steps=30"] if quick else []
    result = digits_protocol(seed, members=len(set(sum(TARGETS, []))), overrides=overrides)
    data, members = result.data, list(result.ensemble.members)
    models = {f"ensemble of {k}": (Ensemble(members[:k]), None, 0.0) for k in range(1, 5)}
    models.update(train_bridges(result, quick, seed))
    sets = {"clean": data.test, "shifted": data.shifted_pooled()}
    rows, reliability = {}, {}
    for name, (model, reference, seconds) in models.items():
        report = evaluate_classifier(model, data=data, title=name)
        by_set = {"clean": report.rows[0], "shifted": report.rows[1]}
        rows[name] = {"flops": report.flops, "latency": report.latency_ms, "seconds": seconds,
                      "temperature": report.temperature}  # fmt: skip
        for set_name, dataset in sets.items():
            metrics = {c: by_set[set_name][c] for c in COLUMNS[:6]}
            if reference is not None:
                p, q = predict_log_probs(reference, dataset).exp(), predict_log_probs(model, dataset).exp()
                metrics.update(kl=kl(p, q), agree=agreement(p, q))
            rows[name][set_name] = metrics
        if seed == 0 and name in ("ensemble of 1", "ensemble of 4", "DBN 1 bridge, 1 step (distilled)"):
            logp = predict_log_probs(model, data.test)
            reliability[name] = (logp, report.temperature)
    curve = {s: [rows[f"ensemble of {k}"][s]["nll"] for k in range(1, 5)] for s in sets}
    for name in rows:
        for s in sets:
            rows[name][s]["dee"] = deep_ensemble_equivalent(rows[name][s]["nll"], curve[s])
    return {"rows": rows, "reliability": reliability, "labels": data.test.labels}


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.fmean(values):.4f} +- {statistics.stdev(values):.4f}"


def table(results: list[dict], set_name: str) -> list[str]:
    names = list(results[0]["rows"])
    head = ["model", "ACC", "NLL", "Brier", "ECE", "NLL (TS)", "ECE (TS)", "DEE", "KL to target", "agreement",
            "rel. FLOPs", "rel. latency"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name in names:
        per = [r["rows"][name] for r in results]
        cells = [mean_std([p[set_name][c] for p in per]) if c in per[0][set_name] else "-" for c in COLUMNS]
        member = [r["rows"]["ensemble of 1"] for r in results]
        flops = per[0]["flops"] / member[0]["flops"]
        latency = mean_std([p["latency"] / m["latency"] for p, m in zip(per, member, strict=True)])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {flops:.3f} | {latency} |")
    return lines


def targets(results: list[dict]) -> list[str]:
    def mean(name: str, key: str, set_name: str = "clean") -> float:
        return statistics.fmean(r["rows"][name][set_name][key] for r in results)

    member_flops = results[0]["rows"]["ensemble of 1"]["flops"]

    def flops(name: str) -> float:
        return results[0]["rows"][name]["flops"] / member_flops

    one, two = "DBN 1 bridge, 1 step (distilled)", "DBN 2 bridges, 1 step (distilled)"
    checks = [
        (f"one distilled bridge: DEE >= 2 at <= 1.3x FLOPs (clean DEE {mean(one, 'dee'):.2f}, "
         f"{flops(one):.3f}x)", mean(one, "dee") >= 2 and flops(one) <= 1.3),
        (f"two distilled bridges: DEE >= 2.5 at <= 1.5x FLOPs (clean DEE {mean(two, 'dee'):.2f}, "
         f"{flops(two):.3f}x)", mean(two, "dee") >= 2.5 and flops(two) <= 1.5),
    ]  # fmt: skip
    for name in (one, two):
        for set_name in ("clean", "shifted"):
            ts, ens = mean(name, "ece_ts", set_name), mean("ensemble of 4", "ece", set_name)
            checks.append((f"{name}, {set_name}: temperature-scaled ECE {ts:.4f} no worse than the 4-member "
                           f"ensemble's raw ECE {ens:.4f}", ts <= ens))  # fmt: skip
    return [f"- {'met' if ok else '**missed**'}: {text}" for text, ok in checks]


def reliability_figure(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for name, (logp, temperature) in result["reliability"].items():
        panels.append((f"{name}", logp.exp()))
        if name.startswith("DBN"):
            panels.append((f"{name}, temperature-scaled (T={temperature:.2f})", torch.softmax(logp / temperature, -1)))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.6))
    for ax, (title, probs) in zip(axes, panels, strict=True):
        bins = reliability_bins(probs, result["labels"])
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        centres = (torch.arange(len(bins.counts)) + 0.5) / len(bins.counts)
        ax.bar(centres, bins.accuracy, width=1 / len(bins.counts), alpha=0.7, edgecolor="k")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("confidence")
    axes[0].set_ylabel("accuracy")
    fig.tight_layout()
    save_figure_atomic(fig, path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny training, one seed, print only")
    parser.add_argument("--seeds", type=int, default=3, help="protocol seeds 0..N-1 (default 3)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [0] if args.quick else list(range(args.seeds))
    start = time.perf_counter()
    header = machine_lines()
    results = [measure_seed(seed, args.quick) for seed in seeds]
    lines = [
        "# Diffusion bridge networks vs deep ensembles (digits protocol)", "",
        f"Mean +- std over protocol seeds {seeds} (`benchmarks/dbn.py`, {time.perf_counter() - start:.0f} s). "
        "Members: the `digits_ensemble` recipe; bridges: the `dbn_digits` recipe's settings, from member 0, "
        "trained on the whole train split (1,253 images, no labels read). Ensembles use the first k members. "
        "DBN 1 bridge targets the ensemble of members 0-3; DBN 2 bridges adds a bridge toward members 0, 4, 5, 6 "
        "(fidelity is then measured to the 7-member ensemble). DEE: the ensemble size (1-4) whose NLL the model "
        "matches on the same set, clamped at 4. TS: temperature scaling fitted on the validation split. "
        "Relative FLOPs and latency (batch 256, CPU) are against one member, measured in the same run.", "",
        "## Clean test split", "", *table(results, "clean"), "",
        "## Shifted set (all corruptions and severities pooled)", "", *table(results, "shifted"), "",
        "## Targets (issue 11)", "", *targets(results), "",
        "![reliability](dbn_reliability.png)", "",
        "Reliability diagrams (seed 0, clean test split): one member, the 4-member ensemble and the distilled "
        "bridge, raw and temperature-scaled.", "",
        "## Machine", "", *header, "",
    ]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        reliability_figure(results[0], OUT_DIR / "dbn_reliability.png")
        write_text_atomic(OUT_DIR / "dbn.md", text)


if __name__ == "__main__":
    main()
