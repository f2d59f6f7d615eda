import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """The test classifiers are tiny: one intra-op thread avoids OpenMP stalls on a shared, busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
