"""Deep ensembles of 1-4 members on the digits protocol: clean and shifted ACC, NLL, Brier, ECE, cost.

For each protocol seed (:func:`genflow.classify.digits_protocol`) four members are
trained; every ensemble of ``k`` of them (all ``C(4, k)`` subsets, averaged) is
scored on the clean test split and the pooled shifted set (every
``digits_corrupted`` kind and severity), raw and temperature-scaled (T fitted on
the validation split for each ensemble). Results are mean +- std over the seeds.
The whole 4-member protocol (training, then :func:`genflow.classify.evaluate_classifier`)
is timed per seed.

Usage::

    .venv/bin/python benchmarks/ensembles.py            # -> docs/benchmarks/ensembles.md
    .venv/bin/python benchmarks/ensembles.py --quick    # smoke run (30 steps, 1 seed), printed only
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, machine_lines, write_text_atomic  # noqa: E402

from genflow.classify import combine_logits, digits_protocol, evaluate_classifier, predict_log_probs  # noqa: E402
from genflow.classify.evaluate import prediction_metrics  # noqa: E402
from genflow.metrics import disagreement, fit_temperature  # noqa: E402

COLUMNS = ("acc", "nll", "brier", "ece", "nll_ts", "ece_ts")


def measure_seed(seed: int, members: int, overrides: list[str]) -> dict:
    """Train one protocol seed, time it with its evaluation, and score every sub-ensemble."""
    start = time.perf_counter()
    result = digits_protocol(seed, members=members, overrides=overrides)
    evaluate_classifier(result.ensemble, data=result.data)
    protocol_seconds = time.perf_counter() - start
    data = result.data
    sets = {"val": data.val, "clean": data.test, "shifted": data.shifted_pooled()}
    member_logp = {name: torch.stack([predict_log_probs(m, d) for m in result.ensemble.members])
                   for name, d in sets.items()}  # fmt: skip
    per_size: dict[int, dict[str, dict[str, float]]] = {}
    for k in range(1, members + 1):
        scores: dict[str, list[dict[str, float]]] = {"clean": [], "shifted": []}
        for subset in itertools.combinations(range(members), k):
            index = list(subset)
            t = fit_temperature(combine_logits(member_logp["val"][index]), data.val.labels)
            for name in scores:
                logp = combine_logits(member_logp[name][index])
                scores[name].append(prediction_metrics(logp, sets[name].labels, t))
        per_size[k] = {
            name: {c: statistics.fmean(s[c] for s in rows) for c in COLUMNS} for name, rows in scores.items()
        }
    return {
        "per_size": per_size,
        "member_seconds": statistics.fmean(result.seconds),
        "protocol_seconds": protocol_seconds,
        "flops": result.ensemble.members[0].flops(1),
        "disagreement": {name: disagreement(member_logp[name].exp()) for name in ("clean", "shifted")},
    }


def _pm(values: list[float], digits: int = 3) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} +- {std:.{digits}f}"


def report(runs: list[dict], members: int, seeds: list[int], overrides: list[str]) -> list[str]:
    lines = []
    titles = {"clean": "Clean test split (368 images)",
              "shifted": "Shifted: digits_corrupted, 4 kinds x 3 severities pooled (4,416 images)"}  # fmt: skip
    header = " | ".join(c.upper().replace("_TS", " (T-scaled)") for c in COLUMNS)
    for name, title in titles.items():
        lines += [f"### {title}", "", f"| members | {header} | FLOPs/image | training s |",
                  "|---" * (len(COLUMNS) + 3) + "|"]  # fmt: skip
        for k in range(1, members + 1):
            cells = [_pm([r["per_size"][k][name][c] for r in runs]) for c in COLUMNS]
            cost = [f"{k * runs[0]['flops']:,}", _pm([k * r["member_seconds"] for r in runs], 1)]
            lines.append(f"| {k} | " + " | ".join(cells + cost) + " |")
        ratios = [r["per_size"][members][name]["nll"] / r["per_size"][1][name]["nll"] for r in runs]
        lines += ["", f"NLL of {members} members / NLL of one member: {_pm(ratios)} (worst seed {max(ratios):.3f}); "
                  f"member disagreement {_pm([r['disagreement'][name] for r in runs])}.", ""]  # fmt: skip
    total = [r["protocol_seconds"] for r in runs]
    lines += [f"Whole {members}-member protocol (train + evaluate_classifier) per seed: {_pm(total, 1)} s "
              f"(max {max(total):.1f} s). Seeds {seeds}; overrides {overrides or 'none'}."]  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="30 steps and one seed; print, write nothing")
    parser.add_argument("--out", default=str(OUT_DIR / "ensembles.md"))
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    args = parser.parse_args()
    seeds, overrides = (args.seeds[:1], ["trainer.steps=30"]) if args.quick else (args.seeds, [])
    torch.set_num_threads(args.threads)  # one thread: on a shared, busy CPU two threads ran several times slower
    runs = []
    for seed in seeds:
        runs.append(measure_seed(seed, args.members, overrides))
        print(f"seed {seed}: protocol {runs[-1]['protocol_seconds']:.1f} s", flush=True)
    lines = report(runs, args.members, seeds, overrides)
    print("\n".join(lines))
    if not args.quick:
        body = [
            "# Deep ensembles on the digits protocol",
            "",
            "Protocol (`genflow.classify.digits_protocol`, recipe `digits_ensemble`): CIFAR-style ResNet-8 of width "
            "16 on 8x8 digits, 300 steps of batch 64, AdamW lr 3e-3 with a cosine schedule, random crops with "
            "1-pixel padding, trained on the first 50 images of each digit of the train split (500 images); "
            "members from seeds 1000 s + i. Every ensemble of k members is scored over all C(4, k) subsets of the "
            "four members (averaged), temperature fitted per ensemble on the validation split (176 images). "
            "Mean +- std over the protocol seeds. The machine is shared with other jobs while this runs, so the "
            "times are upper bounds.",
            "",
            *report(runs, args.members, seeds, overrides),
            "",
            *machine_lines(),
        ]
        write_text_atomic(args.out, "\n".join(body) + "\n")
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
