import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from genflow.testing import register_test_models  # noqa: E402

register_test_models()  # the exact Gaussian-mixture model joins MODELS for the registry-wide tests

settings.register_profile(
    "genflow", deadline=None, max_examples=15, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile("genflow")
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def demo_context(tmp_path_factory):
    """A ``--quick`` demo context (genflow.demo_sections) around a tiny trained digits DiT, for section tests.

    The DiT trains for a few steps only: a section test checks that the section runs and reports, not quality.
    The shared ensemble (``ctx.ensemble()``) is trained once per test session on first use.
    """
    from genflow.demo_sections import DemoContext
    from genflow.pipeline import load_trained, train
    from genflow.recipe import load_recipe

    out = tmp_path_factory.mktemp("demo")
    run_dir = out / "train"
    overrides = ["trainer.steps=4", "trainer.batch_size=16", "trainer.checkpoint_every=4", "trainer.log_every=2",
                 "trainer.warmup_steps=0"]  # fmt: skip
    train(load_recipe("digits_dit", overrides), out_dir=run_dir, progress=False)
    process, model = load_trained(run_dir)
    return DemoContext(out, 0, True, process, model, run_dir)
