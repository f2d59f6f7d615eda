"""Evaluating a classifier or an ensemble: the metrics table clean and shifted, reliability diagrams, cost.

:func:`evaluate_classifier` runs the model on the protocol's data
(:func:`~genflow.classify.protocol.protocol_data`), fits a temperature on the
validation split, and reports for the clean test split, the pooled shifted set
and each corruption kind (severities pooled): ACC, NLL, Brier, ECE and the
temperature-scaled NLL and ECE; plus FLOPs per image and measured latency.
With ``out_dir`` it writes ``metrics.md``, ``metrics.json`` and
``reliability_clean.png`` / ``reliability_shifted.png``.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from genflow.classify.loading import load_run
from genflow.classify.protocol import ProtocolData, protocol_data
from genflow.data import CORRUPTIONS, ImageTensorDataset
from genflow.io import write_text_atomic
from genflow.metrics.calibration import accuracy, brier, ece, fit_temperature, nll, reliability_diagram

__all__ = ["predict_log_probs", "prediction_metrics", "measure_latency", "ClassifierReport", "evaluate_classifier",
           "evaluate_run"]  # fmt: skip

METRIC_COLUMNS = ("acc", "nll", "brier", "ece", "nll_ts", "ece_ts")


@torch.no_grad()
def predict_log_probs(model: nn.Module, dataset: ImageTensorDataset, batch_size: int = 1024) -> Tensor:
    """``log_softmax`` of the model's logits on every image of ``dataset`` (eval mode), float64 ``(N, C)``."""
    was_training = model.training
    model.eval()
    try:
        parts = [model(dataset.images[i : i + batch_size]) for i in range(0, len(dataset), batch_size)]
    finally:
        model.train(was_training)
    return torch.log_softmax(torch.cat(parts).double(), dim=-1)


def prediction_metrics(log_probs: Tensor, labels: Tensor, temperature: float = 1.0) -> dict[str, float]:
    """ACC, NLL, Brier, ECE of ``exp(log_probs)`` and the NLL and ECE of ``softmax(log_probs / temperature)``."""
    probs, scaled = log_probs.exp(), torch.softmax(log_probs / temperature, dim=-1)
    probs = probs / probs.sum(-1, keepdim=True)  # exp(log_softmax) sums to 1 up to rounding
    return {"acc": accuracy(probs, labels), "nll": nll(probs, labels), "brier": brier(probs, labels),
            "ece": ece(probs, labels), "nll_ts": nll(scaled, labels), "ece_ts": ece(scaled, labels)}  # fmt: skip


@torch.no_grad()
def measure_latency(model: nn.Module, images: Tensor, repeats: int = 7) -> float:
    """Median wall time of one forward pass on ``images``, in milliseconds per image (one warm-up call)."""
    model.eval()
    model(images)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(images)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times) / images.shape[0]


@dataclass
class ClassifierReport:
    """What :func:`evaluate_classifier` measured.

    Attributes:
        rows: One dict per evaluation set (``set`` plus :data:`METRIC_COLUMNS`).
        temperature: Fitted on the validation split.
        flops: FLOPs of one image.
        latency_ms: Milliseconds per image at batch ``latency_batch``.
        latency_batch: The batch the latency was measured at.
        files: Files written.
    """

    rows: list[dict[str, Any]]
    temperature: float
    flops: int
    latency_ms: float
    latency_batch: int
    files: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        """The metrics table and the cost line as markdown."""
        lines = ["| set | " + " | ".join(METRIC_COLUMNS) + " |", "|" + " --- |" * (len(METRIC_COLUMNS) + 1)]
        lines += ["| " + " | ".join([r["set"], *(f"{r[c]:.4f}" for c in METRIC_COLUMNS)]) + " |" for r in self.rows]
        return "\n".join([*lines, "", f"Temperature (fitted on the validation split): {self.temperature:.4f}. "
                          f"FLOPs per image: {self.flops:,}. Latency: {self.latency_ms:.4f} ms per image at batch "
                          f"{self.latency_batch} (CPU, median of 7)."])  # fmt: skip


def evaluate_classifier(
    model: nn.Module,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    data: ProtocolData | None = None,
    latency_batch: int = 256,
    title: str = "classifier",
) -> ClassifierReport:
    """Evaluate a :class:`~genflow.classify.Classifier` or :class:`~genflow.classify.Ensemble` on the digits protocol.

    Args:
        model: Anything with ``forward(x) -> logits``, ``flops(batch)`` and ``image_size``.
        out_dir: Folder for ``metrics.md``, ``metrics.json`` and the reliability diagrams (None: write nothing).
        data: Evaluation data; default :func:`protocol_data` at the model's ``image_size``.
        latency_batch: Batch used to measure latency.
        title: Name used in the report and plot titles.

    Returns:
        :class:`ClassifierReport`.
    """
    data = data if data is not None else protocol_data(int(model.image_size))
    temperature = fit_temperature(predict_log_probs(model, data.val), data.val.labels)
    shifted = {name: predict_log_probs(model, dataset) for name, dataset in data.shifted.items()}  # each set once

    def pooled(prefix: str) -> tuple[Tensor, Tensor]:
        names = [name for name in data.shifted if name.startswith(prefix)]
        return torch.cat([shifted[n] for n in names]), torch.cat([data.shifted[n].labels for n in names])

    sets = {"clean": (predict_log_probs(model, data.test), data.test.labels), "shifted (all)": pooled("")}
    sets.update({f"shifted: {kind}": pooled(f"{kind}-") for kind in CORRUPTIONS})
    rows = [{"set": name, **prediction_metrics(lp, labels, temperature)} for name, (lp, labels) in sets.items()]
    batch = data.test.images[:latency_batch]
    report = ClassifierReport(rows, temperature, int(model.flops(1)), measure_latency(model, batch), batch.shape[0])
    if out_dir is not None:
        out = Path(out_dir)
        for name, label in (("clean", "clean"), ("shifted (all)", "shifted")):
            log_probs, labels = sets[name]
            path = reliability_diagram(log_probs.exp(), labels, out / f"reliability_{label}.png",
                                       title=f"{title}, {label}")  # fmt: skip
            report.files.append(str(path))
        write_text_atomic(out / "metrics.md", f"# {title}\n\n{report.markdown()}\n")
        write_text_atomic(out / "metrics.json", json.dumps(asdict(report), indent=1))
        report.files += [str(out / "metrics.md"), str(out / "metrics.json")]
    return report


def evaluate_run(path: str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None) -> ClassifierReport:
    """:func:`evaluate_classifier` on a trained run folder: an ensemble run (``member-<i>/``) or one classifier.

    This is what ``genflow evaluate RUN`` does for a classifier run (files in ``out_dir``, default ``RUN/eval``).
    """
    model = load_run(path)
    kind = f"ensemble of {len(model)}" if hasattr(model, "members") else type(model).__name__
    out = Path(out_dir) if out_dir is not None else Path(path) / "eval"
    return evaluate_classifier(model, out, title=f"{Path(path).name} ({kind})")

