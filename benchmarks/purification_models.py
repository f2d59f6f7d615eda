"""The digits purification models and what the purifiers do to clean digits.

1. Per-noise-level denoising score matching loss of the trained ``digits_ncsn`` and ``digits_ebm``
   models on the test split, sigma^2-weighted (the training objective) and unweighted, beside the
   untrained models: the weighting keeps every level O(1).
2. Their training curves (``metrics.jsonl``), as a plot.
3. Clean test digits through ADP (:class:`~genflow.purify.ScorePurifier`, both models) and diffusion
   purification (:class:`~genflow.purify.DiffusionPurifier`): mean squared distance to the clean image,
   the accuracy of a ``digits_classifier`` on the purified images (one draw, and the 8-draw softmax
   ensemble of :class:`~genflow.purify.PurifiedClassifier`), network evaluations and seconds per image.
   No attack here: robustness is measured by the robustness benchmark.

Usage::

    .venv/bin/python benchmarks/purification_models.py                      # trains, -> docs/benchmarks/
    .venv/bin/python benchmarks/purification_models.py --ncsn runs/digits_ncsn --ebm runs/digits_ebm
    .venv/bin/python benchmarks/purification_models.py --quick              # smoke run, printed only
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, machine_lines, save_figure_atomic, write_text_atomic  # noqa: E402

import genflow as gf  # noqa: E402
from genflow.classify import load_classifier, train_recipe  # noqa: E402
from genflow.pipeline import build, load_trained, train  # noqa: E402
from genflow.purify import DiffusionPurifier, PurifiedClassifier, ScorePurifier  # noqa: E402
from genflow.recipe import load_recipe  # noqa: E402

SIGMAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 5.0)
RECIPES = {"ncsn": "digits_ncsn", "ebm": "digits_ebm"}
ADP_SETTINGS = ((0.1, 0, 0.05, None), (0.1, 10, 0.05, None), (0.25, 0, 0.05, None), (0.25, 10, 0.05, None),
                (0.25, 10, 0.5, None), (0.25, 10, 0.5, 0.1))  # fmt: skip
"""(sigma_inj, max_steps, step_scale, score_sigma) of the ADP rows (score_sigma None: sigma_inj)."""
DRAWS = 8


def level_losses(model, process, x: torch.Tensor, weighting: str, seed: int = 0) -> list[float]:
    """The DSM loss with every test image at one noise level, per level in ``SIGMAS``."""
    objective = gf.DenoisingScoreMatching(process, weighting=weighting)
    g = torch.Generator().manual_seed(seed)
    out = []
    for sigma in SIGMAS:
        t = process.t_from_log_snr(torch.tensor(-math.log(sigma))).float().clamp(0, 1).expand(len(x))
        draws = {"t": t, "noise": torch.randn(x.shape, generator=g)}
        out.append(float(objective.loss(model, {"x": x}, draws).detach()))
    return out


def get_model(kind: str, run: str | None, work: Path, quick: bool) -> tuple[Path, object, object]:
    if run is None:
        run = work / kind
        overrides = ["trainer.steps=30", "trainer.checkpoint_every=30"] if quick else []
        train(load_recipe(RECIPES[kind], overrides), out_dir=run, progress=False)
    process, model = load_trained(run)
    return Path(run), process, model


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return 100.0 * float((logits.argmax(-1) == y).float().mean())


def purification_rows(purifiers, classifier, x, y) -> list[list[str]]:
    rows = []
    with torch.no_grad():
        rows.append(["none (undefended)", "-", "0.0000", f"{accuracy(classifier(x), y):.1f}", "-", "0", "0"])
        for label, model_name, purifier in purifiers:
            start = time.perf_counter()
            out = purifier.purify(x, torch.Generator().manual_seed(0))
            seconds = (time.perf_counter() - start) / len(x)
            evals = purifier.last_cost.evaluations_per_image  # of the one-draw call above
            mse = float((out - x).pow(2).mean())
            ensemble = PurifiedClassifier(purifier, classifier, draws=DRAWS, combine="softmax", seed=1)(x)
            rows.append([label, model_name, f"{mse:.4f}", f"{accuracy(classifier(out), y):.1f}",
                         f"{accuracy(ensemble, y):.1f}", f"{evals:.1f}", f"{1000 * seconds:.2f}"])  # fmt: skip
    return rows


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ncsn", help="trained digits_ncsn run (default: train it)")
    parser.add_argument("--ebm", help="trained digits_ebm run (default: train it)")
    parser.add_argument("--classifier", help="trained digits_classifier run (default: train it)")
    parser.add_argument("--quick", action="store_true", help="tiny training, print only")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "purification_models.md")
    args = parser.parse_args()
    torch.manual_seed(0)  # nothing below draws from it; the trainers seed their own forked RNG
    work = Path(tempfile.mkdtemp(prefix="purification_models_"))
    started = time.perf_counter()
    machine = machine_lines()
    test = gf.load_digits_split("test", size=8, value_range="classification")
    x = torch.stack([test[i][0] for i in range(len(test))])
    y = torch.tensor([int(test[i][1]) for i in range(len(test))])
    if args.quick:
        x, y = x[:64], y[:64]

    models, level_rows, curves, provenance = {}, [], {}, []
    for kind in ("ncsn", "ebm"):
        run, process, model = get_model(kind, getattr(args, kind), work, args.quick)
        models[kind] = (process, model)
        fresh = build(load_recipe(RECIPES[kind])).model.eval()  # the same seeded initialisation, untrained
        for label, m in (("untrained", fresh), ("trained", model)):
            for weighting in ("sigma2", "none"):
                losses = level_losses(m, process, x, weighting)
                level_rows.append([RECIPES[kind], label, weighting, *(f"{v:.3g}" for v in losses)])
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        curves[RECIPES[kind]] = [(r["step"], r["loss"]) for r in records if "loss" in r]
        step, loss = curves[RECIPES[kind]][-1]
        name = RECIPES[kind]
        provenance.append(f"- `{name}`: {step} steps (`genflow train {name}`), last logged loss {loss:.3f}")

    if args.classifier is None:
        overrides = ["trainer.steps=30"] if args.quick else []
        train_recipe(load_recipe("digits_classifier", overrides), out_dir=work / "classifier", progress=False)
        classifier = load_classifier(work / "classifier")
    else:
        classifier = load_classifier(args.classifier)

    purifiers = []
    for kind in ("ncsn", "ebm"):
        process, model = models[kind]
        for sigma_inj, steps, scale, score_sigma in ADP_SETTINGS:
            purifier = ScorePurifier(model, process, sigma_inj=sigma_inj, max_steps=steps, step_scale=scale,
                                     score_sigma=score_sigma)  # fmt: skip
            label = f"ADP sigma_inj={sigma_inj}, K={steps}, lambda={scale}"
            label += "" if score_sigma is None else f", score_sigma={score_sigma}"
            purifiers.append((label, RECIPES[kind], purifier))
    process, model = models["ncsn"]
    for sigma_star in (0.1, 0.25):
        t_star = float(process.t_from_log_snr(torch.tensor(-math.log(sigma_star))))
        purifiers.append((f"diffusion sigma*={sigma_star} (t*={t_star:.3f}), euler_maruyama 20 steps", "digits_ncsn",
                          DiffusionPurifier(model, process, t_star=t_star, steps=20)))  # fmt: skip
    rows = purification_rows(purifiers, classifier, x, y)
    seconds = time.perf_counter() - started

    level_header = ["model", "weights", "weighting", *(f"sigma={s:g}" for s in SIGMAS)]
    purify_header = ["purifier", "model", "MSE to clean", "acc % (1 draw)", f"acc % ({DRAWS}-draw softmax)",
                     "network evals / image", "ms / image"]  # fmt: skip
    lines = [
        "# Purification models on the digits",
        "",
        "Made by `benchmarks/purification_models.py` (see [Purification](../purification.md)). "
        f"{len(x)} test digits, pixels in [0, 1]; total run time {seconds:.0f} s.",
        "",
        "Models:",
        "",
        *provenance,
        "",
        "## Per-level DSM loss",
        "",
        "The loss with every test image at one noise level (fixed noise draws). `sigma2` is the training "
        "objective (the score error weighted by sigma^2): about 1 at every level before training and at most "
        "O(1) after it, lowest where denoising is easy (large sigma). `none` is the plain score error, which "
        "grows like 1 / sigma^2 and would let the smallest level dominate training.",
        "",
        *table(level_header, level_rows),
        "",
        "![training curves](purification_models_curves.png)",
        "",
        "## Clean digits through the purifiers",
        "",
        "No attack: what the defence costs in clean accuracy. `K` is ADP's `max_steps`, `lambda` its "
        "`step_scale` (0.05 is the paper's CIFAR-10 value; on these models one step then moves about "
        "lambda of the way to the denoised image, so K = 10 removes only part of the injected noise). "
        "The classifier is the `digits_classifier` recipe; seconds are wall clock on a shared machine.",
        "",
        *table(purify_header, rows),
        "",
        "## Machine",
        "",
        *machine,
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.quick:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, points in curves.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("sigma^2-weighted DSM loss")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title("Training curves (weighting: sigma2)")
    fig.tight_layout()
    save_figure_atomic(fig, args.out.with_name("purification_models_curves.png"), dpi=100)
    write_text_atomic(args.out, text)


if __name__ == "__main__":
    main()
