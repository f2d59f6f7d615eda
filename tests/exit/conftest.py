from tests.model.conftest import _one_thread  # noqa: F401  (tiny models: one intra-op thread)
