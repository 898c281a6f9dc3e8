"""GPU tests: run on the GPU machine (`pytest -m gpu tests/gpu`); skipped where no CUDA device is visible."""

import pytest


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_gpu = False
    for item in items:
        if "tests/gpu" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.gpu)
            if not has_gpu:
                item.add_marker(pytest.mark.skip(reason="needs an NVIDIA GPU"))


@pytest.fixture(scope="module")
def llama_1b():
    """A random bf16 model of Llama-3.2-1B shape on the GPU, one per test module, released after it."""
    import torch

    from elana_magic.models import random_model

    model = random_model("llama-3.2-1b", dtype=torch.bfloat16, device="cuda")
    yield model
    del model
    torch.cuda.empty_cache()
