"""The robustness report: accuracy per attack and budget, the per-point worst case, and the protocol.

Accuracies come from re-evaluating every adversarial example with fresh defence noise: ``R``
repeats, each the defence's mean softmax over ``S`` draws. A cell reads ``mean +- std (worst)``:
the mean and standard deviation over the repeats of the accuracy, and the fraction of images the
defence got right in *every* repeat. The **worst case** row takes, for each image and repeat, the
minimum over the clean image and every attack at every budget up to the column's (the clean image and
an adversarial example within a smaller budget are also within the larger one), so it never exceeds the
clean accuracy and never increases with the budget.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from genflow.io import write_text_atomic
from genflow.robustness.presets import PRESETS
from genflow.robustness.shards import PointResults

__all__ = ["RobustnessReport", "accuracy_summary"]


def accuracy_summary(correct: Tensor) -> dict[str, float]:
    """``{"mean", "std", "worst"}`` of ``(R, n)`` per-repeat correctness, as percentages."""
    per_repeat = correct.float().mean(-1) * 100
    std = float(per_repeat.std(unbiased=False)) if per_repeat.numel() > 1 else 0.0
    return {"mean": float(per_repeat.mean()), "std": std, "worst": float(correct.all(0).float().mean() * 100)}


def _cell(s: dict[str, float]) -> str:
    return f"{s['mean']:.1f} ± {s['std']:.1f} ({s['worst']:.1f})"


@dataclass
class RobustnessReport:
    """Per-point results, their summaries and the protocol that produced them.

    Attributes:
        points: The merged :class:`~genflow.robustness.shards.PointResults`.
        protocol: What was run (defence, norm, repeats, draws, per-attack settings, seeds, notes).
    """

    points: PointResults
    protocol: dict[str, Any]

    def worst_case(self) -> Tensor:
        """``(K, R, n)``: right on the clean image and under every attack at every budget up to ``k``."""
        per_budget = self.points.correct.all(0) & self.points.clean  # (K, R, n)
        return torch.cummin(per_budget.to(torch.uint8), dim=0).values.bool()

    def clean(self) -> dict[str, float]:
        return accuracy_summary(self.points.clean)

    def accuracy(self, attack: str, k: int) -> dict[str, float]:
        """Summary of attack ``attack`` at budget index ``k``."""
        return accuracy_summary(self.points.correct[self.points.attacks.index(attack), k])

    def summary(self) -> dict[str, Any]:
        """Every number of the table as a JSON-able dict."""
        eps = self.points.epsilons
        return {
            "clean": self.clean(),
            "epsilons": eps,
            "attacks": {
                a: [self.accuracy(a, k) | {"seconds": float(self.points.seconds[i, k])} for k in range(len(eps))]
                for i, a in enumerate(self.points.attacks)
            },  # fmt: skip
            "worst_case": [accuracy_summary(w) for w in self.worst_case()],
            "images": int(self.points.index.numel()),
        }

    def markdown(self) -> str:
        """The protocol and the table (percent; ``mean ± std (worst over repeats)``)."""
        eps = self.points.epsilons
        header = "| attack | " + " | ".join(f"eps {e}" for e in self.eps_labels()) + " |"
        lines = ["**Protocol.** " + " ".join(self.protocol_lines()), "", header,
                 "|" + " --- |" * (len(eps) + 1)]  # fmt: skip
        lines.append(f"| clean | {_cell(self.clean())} |" + " |" * (len(eps) - 1))
        for a in self.points.attacks:
            label = f"{a} (weak)" if PRESETS[a].weak else a
            lines.append(f"| {label} | " + " | ".join(_cell(self.accuracy(a, k)) for k in range(len(eps))) + " |")
        worst = " | ".join(_cell(accuracy_summary(w)) for w in self.worst_case())
        lines.append(f"| **worst case over attacks** | {worst} |")
        return "\n".join(lines)

    def eps_labels(self) -> list[str]:
        """The budgets as the report writes them (``8/255`` with an ``eps_denominator``, else ``0.0314``)."""
        return list(self.protocol.get("eps_labels", [f"{e:.4g}" for e in self.points.epsilons]))

    def protocol_lines(self) -> list[str]:
        p = self.protocol
        text = [
            f"Defence `{p['defence']}` on {p['images']} images, {p['norm']} budgets {p['epsilons']}.",
            f"Every adversarial example re-evaluated with fresh defence noise: {p['repeats']} repeats of "
            f"{p['draws']} draw(s) (mean softmax); cells are mean ± std over repeats (worst case: right in every "
            "repeat).",
            "Attacks: "
            + "; ".join(f"{a} = {PRESETS[a].summary} {p['settings'][a]}" for a in self.points.attacks)
            + ".",
        ]
        if not p.get("gradient_modes", True):
            text.append("The defence has no gradient_mode: every gradient attack used its own gradients (BPDA "
                        "equals the full gradient here).")  # fmt: skip
        if any(PRESETS[a].weak for a in self.points.attacks):
            text.append("Presets marked weak (BPDA, preprocessor-blind) overstate the robustness of a purifier; "
                        "read the full-gradient rows and the worst case.")  # fmt: skip
        text += list(p.get("notes", []))
        return text

    def plot(self, path: str | os.PathLike[str]) -> Path:
        """Accuracy vs budget, one line per attack and the worst case, saved as a PNG."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from genflow.io import atomic_path

        eps = [0.0] + list(self.points.epsilons)
        clean = self.clean()["mean"]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for a in self.points.attacks:
            ys = [clean] + [self.accuracy(a, k)["mean"] for k in range(len(eps) - 1)]
            ax.plot(eps, ys, marker="o", linestyle="--" if PRESETS[a].weak else "-",
                    label=f"{a} (weak)" if PRESETS[a].weak else a)  # fmt: skip
        ax.plot(eps, [clean] + [accuracy_summary(w)["mean"] for w in self.worst_case()], color="k", linewidth=2,
                label="worst case")  # fmt: skip
        ax.set_xticks(eps, ["0"] + self.eps_labels(), fontsize=7)
        ax.set_xlabel(f"{self.protocol['norm']} budget")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-2, 102)
        ax.set_title(self.protocol["defence"], fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        return path

    def save(self, out_dir: str | os.PathLike[str], stem: str = "robustness") -> dict[str, Path]:
        """Write ``<stem>.md`` (table), ``<stem>.json`` (numbers + protocol) and ``<stem>.png`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"markdown": out / f"{stem}.md", "json": out / f"{stem}.json", "plot": out / f"{stem}.png"}
        write_text_atomic(paths["markdown"], self.markdown() + f"\n\n![accuracy vs budget]({stem}.png)\n")
        write_text_atomic(paths["json"], json.dumps({"protocol": self.protocol, **self.summary()}, indent=1))
        self.plot(paths["plot"])
        return paths
