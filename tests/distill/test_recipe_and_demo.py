import pytest
import torch

from genflow.classify import load_classifier
from genflow.cli import main
from genflow.distill import BatchEnsemble, distill_student
from genflow.errors import ConfigError
from genflow.train import load_checkpoint

TINY = ["trainer.steps=2", "trainer.batch_size=16", "trainer.validate_every=0", "trainer.log_every=1"]


@pytest.mark.slow
def test_train_distill_digits_and_evaluate_the_student_from_the_command_line(tmp_path, capsys):
    teachers, student = tmp_path / "teachers", tmp_path / "student"
    assert main(["train", "digits_ensemble", *TINY, "model.width=4", "ensemble.members=2", "--out", str(teachers),
                 "--no-progress"]) == 0  # fmt: skip
    assert main(["train", "distill_digits", *TINY, "model.base.width=4", "model.members=2",
                 f"objective.teachers={teachers}", "objective.perturbation=ods", "--out", str(student),
                 "--no-progress"]) == 0  # fmt: skip
    model = load_classifier(student)
    assert isinstance(model, BatchEnsemble) and model.members == 2
    state = load_checkpoint(student).state
    recorded = state["objective_config"]
    assert recorded["perturbation"]["name"] == "ods" and len(recorded["teachers"]) == 2
    assert all(t["source"].startswith(str(teachers.resolve())) and len(t["sha256"]) == 64
               for t in recorded["teachers"])  # fmt: skip
    capsys.readouterr()
    assert main(["evaluate", str(student)]) == 0
    assert "| clean |" in capsys.readouterr().out and (student / "eval" / "metrics.md").is_file()
    # the same student in memory, and a single one, through the library call
    single = distill_student(teachers, student="single", perturbation="confods",
                             overrides=[*TINY, "model.base.width=4"])  # fmt: skip
    assert single.model(torch.rand(3, 1, 8, 8)).shape == (3, 10) and single.seconds > 0
    with pytest.raises(ConfigError, match="student must be one of single, batch_ensemble; got 'many'"):
        distill_student(teachers, student="many")


@pytest.mark.slow
def test_demo_section_reports_teachers_and_students(demo_context):
    from genflow.demo_sections import SECTIONS, distillation

    assert "distillation" in SECTIONS
    lines = distillation.section(demo_context)
    text = "\n".join(lines)
    assert "| one member |" in text and "| 3-member ensemble |" in text
    assert "| batch ensemble student, confods |" in text and "quick mode" in text
    assert (demo_context.out_dir / "distillation_nll.png").read_bytes()[:4] == b"\x89PNG"
