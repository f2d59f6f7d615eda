"""``genflow evaluate RUN --robustness`` on a tiny PGD-AT run trained from the command line."""

from __future__ import annotations

import json

import pytest
import torch

from genflow.cli import main
from genflow.robustness import AttackConfigError
from genflow.robustness.run import digits_attack_set, parse_budgets

TINY = ["trainer.steps=3", "trainer.batch_size=16", "trainer.validate_every=0", "trainer.log_every=1",
        "model.width=4", "objective.steps=2"]  # fmt: skip


def test_train_pgd_at_and_evaluate_its_robustness(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "digits_pgd_at", *TINY, "--out", str(run), "--no-progress"]) == 0
    out = tmp_path / "robust.json"
    code = main(["evaluate", str(run), "--robustness", "--attacks", "blind_pgd,apgd_eot", "--epsilons", "8/255,32/255",
                 "--images", "10", "--attack-settings", '{"*": {"steps": 2}}', "--out", str(out)])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "blind_pgd (weak)" in text and "eps 32/255" in text and "worst case over attacks" in text
    result = json.loads(out.read_text())
    assert result["images"] == 10 and result["protocol"]["settings"]["apgd_eot"]["steps"] == 2
    assert (run / "robustness" / "robustness.png").is_file() and (run / "robustness" / "robustness.md").is_file()
    assert main(["evaluate", str(run), "--robustness", "--epsilons", "8/0"]) == 2
    assert "budgets must be numbers or fractions" in capsys.readouterr().err


def test_budgets_and_attack_set():
    assert parse_budgets("8/255, 0.5") == [8 / 255, 0.5]
    with pytest.raises(AttackConfigError):
        parse_budgets("-1/255")
    x, y = digits_attack_set(20)
    assert x.shape == (20, 1, 8, 8) and torch.equal(torch.bincount(y), torch.full((10,), 2))
    with pytest.raises(AttackConfigError, match="multiple of 10"):
        digits_attack_set(15)


def test_robustness_on_a_missing_run_says_it_is_missing(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nowhere"), "--robustness"]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint found at" in err and "classifier" not in err
