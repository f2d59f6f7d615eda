"""Adversarial purification (ADP) on the digits, evaluated honestly with full-gradient adaptive attacks.

Trains a digits classifier and a noise-conditional score network (recipe ``digits_ncsn``), puts
the score purifier (``genflow.purify.ScorePurifier``: noise injection, then adaptive denoising
steps) in front of the classifier (``PurifiedClassifier``), and attacks both the bare classifier and
the defence with ``genflow.robustness``: preprocessor-blind PGD and BPDA+EOT (weak baselines,
labelled) next to full-gradient PGD-EOT and APGD-EOT. Every adversarial example is re-evaluated with
fresh defence noise. Writes ``results.md`` (the tables) and ``results.json`` (every number and the
protocol) to ``--out``.

    python examples/adversarial_purification.py            # 100 images, longer training (about 10 min on 2 cores)
    python examples/adversarial_purification.py --quick    # 20 images, tiny training and attacks (under a minute)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from genflow.classify.training import recipe_members
from genflow.io import write_text_atomic
from genflow.pipeline import load_trained, train
from genflow.purify import PurifiedClassifier, ScorePurifier
from genflow.recipe import load_recipe
from genflow.robustness import evaluate_robustness
from genflow.robustness.run import digits_attack_set

ATTACKS = ["blind_pgd", "bpda_eot", "pgd_eot", "apgd_eot"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 images, tiny training and attacks (CI runs this)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/example_adversarial_purification")
    args = parser.parse_args()
    out = Path(args.out)
    quick = args.quick
    start = time.perf_counter()

    classifier_steps, score_steps = (100, 100) if quick else (300, 1500)
    recipe = load_recipe("digits_classifier", [f"trainer.steps={classifier_steps}", "trainer.validate_every=0",
                                               f"seed={args.seed}"])  # fmt: skip
    classifier = recipe_members(recipe, out_dir=None, progress=False).ensemble.members[0].eval()
    score_recipe = load_recipe("digits_ncsn", [f"trainer.steps={score_steps}", "trainer.checkpoint_every=0",
                                               "trainer.warmup_steps=20", f"seed={args.seed}"])  # fmt: skip
    train(score_recipe, out_dir=out / "ncsn", progress=False)
    _, score_model = load_trained(out / "ncsn")
    print(f"trained the classifier ({classifier_steps} steps) and the score model ({score_steps} steps) in "
          f"{time.perf_counter() - start:.1f} s")  # fmt: skip

    purifier = ScorePurifier(score_model, sigma_inj=0.25, max_steps=10)
    defended = PurifiedClassifier(purifier, classifier, draws=1, seed=args.seed)
    x, y = digits_attack_set(20 if quick else 100)
    settings = {"*": {"steps": 5, "eot_draws": 2}} if quick else {"*": {"steps": 40, "eot_draws": 4},
                                                                     "apgd_eot": {"steps": 50}}  # fmt: skip
    results, tables = {}, []
    for name, model in (("undefended", classifier), ("ADP (score purifier)", defended)):
        report = evaluate_robustness(
            model, x, y, epsilons=[8 / 255, 32 / 255], attacks=ATTACKS, classifier=classifier,
            repeats=2 if quick else 3, settings=settings, seed=args.seed, name=name, eps_denominator=255,
        )  # fmt: skip
        results[name] = {"protocol": report.protocol, **report.summary()}
        tables.append(f"## {name}\n\n{report.markdown()}\n")
        worst = report.summary()["worst_case"]
        print(f"{name:22s} clean {report.clean()['mean']:5.1f}%  worst case at 8/255 {worst[0]['mean']:5.1f}%  "
              f"at 32/255 {worst[1]['mean']:5.1f}%  (BPDA+EOT at 32/255: {report.accuracy('bpda_eot', 1)['mean']:.1f}%,"
              f" full-gradient APGD-EOT: {report.accuracy('apgd_eot', 1)['mean']:.1f}%)")  # fmt: skip
    with torch.no_grad():
        defended(x)
    cost = purifier.last_cost
    results["purification_cost"] = {"evaluations_per_image": cost.evaluations / cost.images,
                                    "seconds_per_image": cost.seconds / cost.images}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    note = "quick mode: tiny training and attacks, a smoke run" if quick else "full example settings"
    write_text_atomic(out / "results.md", f"# Adversarial purification on the digits ({note})\n\n" + "\n".join(tables))
    write_text_atomic(out / "results.json", json.dumps(results, indent=1))
    print(f"purification: {results['purification_cost']['evaluations_per_image']:.1f} score-network evaluations "
          f"and {1000 * results['purification_cost']['seconds_per_image']:.2f} ms per image")  # fmt: skip
    print(f"tables in {out / 'results.md'}, numbers in {out / 'results.json'} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
