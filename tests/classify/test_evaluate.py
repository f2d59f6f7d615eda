"""evaluate_classifier: the table agrees with the metrics computed directly; files are written."""

from __future__ import annotations

import json

import pytest
import torch

from genflow.classify import Ensemble, evaluate_classifier, protocol_data
from genflow.classify.resnet import CifarResNet
from genflow.data import CORRUPTIONS, SEVERITIES
from genflow.metrics import ece, fit_temperature, nll
from tests.classify.builders import perturb_


def test_report_matches_direct_computation_and_writes_files(tmp_path):
    members = [perturb_(CifarResNet(width=4), seed=i, scale=0.3).eval() for i in range(2)]
    ensemble = Ensemble(members).eval()
    data = protocol_data(8)
    assert len(data.shifted) == len(CORRUPTIONS) * len(SEVERITIES)
    report = evaluate_classifier(ensemble, tmp_path / "eval", data=data, title="test ensemble")
    with torch.no_grad():
        probs = ensemble.predict_proba(data.test.images).double()
        t = fit_temperature(ensemble(data.val.images), data.val.labels)
        scaled = (ensemble(data.test.images).double() / t).softmax(-1)
    clean = report.rows[0]
    assert clean["set"] == "clean" and report.temperature == pytest.approx(t, rel=1e-4)
    assert clean["nll"] == pytest.approx(nll(probs, data.test.labels), rel=1e-5)
    assert clean["ece"] == pytest.approx(ece(probs, data.test.labels), abs=1e-5)
    assert clean["nll_ts"] == pytest.approx(nll(scaled, data.test.labels), rel=1e-4)
    assert [r["set"] for r in report.rows] == ["clean", "shifted (all)", *(f"shifted: {k}" for k in CORRUPTIONS)]
    assert report.flops == 2 * members[0].flops(1) and report.latency_ms > 0
    for name in ("metrics.md", "metrics.json", "reliability_clean.png", "reliability_shifted.png"):
        assert (tmp_path / "eval" / name).is_file()
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["rows"][0]["nll"] == clean["nll"]
    assert "| clean |" in (tmp_path / "eval" / "metrics.md").read_text()
