from tests.model.conftest import _one_thread  # noqa: F401  (one intra-op thread for tiny models on a busy CPU)
