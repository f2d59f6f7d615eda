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
