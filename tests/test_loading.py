"""Loading from every kind of source, with every option. Error cases live in the bad-input table (tests/test_bad_input.py), except the few below that it does not cover."""
import importlib.util
import shutil
import pytest
import torch
from alfred_fm import HuggingFaceModel
from alfred_fm.fixtures import tiny_llama, minilm_path

Q = ("The capital of France is", [" Paris", " London", " a city"])
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny"))


def test_gguf_loads_causal_float32_on_cpu(smol):
    assert smol.kind == "causal" and smol.dtype == torch.float32
    assert smol.source["gguf_file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not torch.cuda.is_available():
        assert smol.device.type == "cpu"   # device_map="auto" (the default) on a CPU-only machine


def hub_cache(cache, repo: str, folder):
    "Lay `folder` out in `cache` as the hub client stores `repo`'s snapshot; return the snapshot's folder."
    entry = cache / ("models--" + repo.replace("/", "--"))
    shutil.copytree(folder, entry / "snapshots" / ("0" * 40))
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text("0" * 40)
    return entry / "snapshots" / ("0" * 40)


def test_hub_id_from_a_cache_folder_offline(llama_dir, tmp_path):
    "A hub id resolves through a Hugging Face cache laid out as the hub client writes it (HF_HUB_OFFLINE=1)."
    hub_cache(tmp_path, "alfred-fm/tiny-llama", llama_dir)
    m = HuggingFaceModel("alfred-fm/tiny-llama", local_path=str(tmp_path), trust_remote_code=False)
    ref = HuggingFaceModel(str(llama_dir))
    assert m.score(Q, progress=False).logits == pytest.approx(ref.score(Q, progress=False).logits, abs=1e-6)


def test_local_path_holding_the_model(llama_dir):
    m = HuggingFaceModel(llama_dir.name, local_path=str(llama_dir.parent))
    assert m.kind == "causal"


def test_custom_tokenizer_is_used_and_never_mutated(smol, llama_dir):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(llama_dir)
    tok.padding_side = "right"
    m = HuggingFaceModel(str(llama_dir), tokenizer=tok)
    assert m.tokenizer is tok
    for model in (m, smol):
        t = model.tokenizer
        before = (t.pad_token, t.padding_side, t.truncation_side, dict(t.special_tokens_map), len(t))
        model.score([Q, ("Hi", [" there", " you"])], progress=False)
        model.generate(["Hi", "The capital of France is"], max_new_tokens=3, progress=False)
        model.encode(["a", "bb bb"], progress=False)
        assert (t.pad_token, t.padding_side, t.truncation_side, dict(t.special_tokens_map), len(t)) == before


def test_tokenizer_from_a_path(llama_dir):
    assert HuggingFaceModel(str(llama_dir), tokenizer=str(llama_dir)).tokenizer("a").input_ids


def test_int8_through_bitsandbytes(llama_dir):
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb
    m8, m32 = HuggingFaceModel(str(llama_dir), int_8=True), HuggingFaceModel(str(llama_dir))
    assert isinstance(m8.model.model.layers[0].mlp.down_proj, bnb.nn.Linear8bitLt)
    a, b = m8.score(Q, progress=False), m32.score(Q, progress=False)
    assert a.prediction == b.prediction
    for c in Q[1]: assert a.logits[c] == pytest.approx(b.logits[c], rel=2e-2)


def test_int8_without_bitsandbytes_fails_before_loading(llama_dir, monkeypatch):
    import transformers
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    def no_load(*a, **k): raise AssertionError("weights were loaded")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
    with pytest.raises(ImportError, match="int_8=True needs bitsandbytes"):
        HuggingFaceModel(str(llama_dir), int_8=True)


# Error cases the bad-input table (nbs/16_errors.ipynb, tests/test_bad_input.py) has no row or a weaker test for;
# the rest of the loading errors are tested there only.
@pytest.mark.parametrize("kwargs, exc, message", [
    (dict(model_string="/no/such/model.gguf"), FileNotFoundError, "does not exist"),
    (dict(dtype=torch.int8), ValueError, "not supported"),
])
def test_clear_errors_before_loading(llama_dir, kwargs, exc, message):
    kwargs = {"model_string": str(llama_dir), **kwargs}
    with pytest.raises(exc, match=message):
        HuggingFaceModel(**kwargs)


def test_cuda_device_map_on_a_cpu_machine(llama_dir):
    if torch.cuda.is_available(): pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        HuggingFaceModel(str(llama_dir), device_map={"": 0})


def test_encoder_only_model_loads_for_encoding():
    m = HuggingFaceModel(str(minilm_path()), trust_remote_code=False)
    assert m.kind == "encoder" and m.encode("hello", progress=False).shape == (384,)


@cuda
def test_float16_on_cuda_batched_equals_unbatched(llama_dir):
    m = HuggingFaceModel(str(llama_dir), dtype="float16")
    assert m.device.type == "cuda" and m.dtype == torch.float16
    batched = m.score([Q, ("Hi", [" there", " you all"])], progress=False)
    for q, r in zip([Q, ("Hi", [" there", " you all"])], batched):
        one = m.score(q, batch_size=1, progress=False)
        for c in q[1]: assert r.logits[c] == pytest.approx(one.logits[c], rel=2 ** -7, abs=2e-2)


@cuda
def test_device_map_auto_on_cuda(llama_dir):
    m = HuggingFaceModel(str(llama_dir), device_map="auto")
    assert m.device.type == "cuda"
    assert m.score(Q, progress=False).prediction in Q[1]


def test_remote_code_named_for_a_cached_hub_snapshot(llama_dir, tmp_path):
    "A hub id's config read from the local cache names the code that trust_remote_code=True would run, before loading."
    import json
    from alfred_fm.loading import model_source, remote_code_files
    snap = hub_cache(tmp_path, "alfred-fm/custom", llama_dir)
    config = json.loads((snap / "config.json").read_text())
    (snap / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoConfig": "configuration_custom.Custom",
                                                                          "AutoModelForCausalLM": "other/repo--modeling_x.X"}}))
    source = model_source("alfred-fm/custom", local_path=str(tmp_path))
    assert remote_code_files(source) == sorted([str(snap / "configuration_custom.py"), "other/repo: modeling_x.py"])
    with pytest.warns(UserWarning, match="configuration_custom.py"), pytest.raises(OSError, match="tried to load code"):
        HuggingFaceModel("alfred-fm/custom", local_path=str(tmp_path))


@cuda
def test_float16_checkpoint_with_auto_dtype_on_cuda_warns(llama_dir, tmp_path):
    from transformers import AutoModelForCausalLM
    AutoModelForCausalLM.from_pretrained(llama_dir).half().save_pretrained(tmp_path)
    shutil.copy(llama_dir / "tokenizer.json", tmp_path); shutil.copy(llama_dir / "tokenizer_config.json", tmp_path)
    with pytest.warns(UserWarning, match="dtype='auto' loaded this model in float16"):
        m = HuggingFaceModel(str(tmp_path), trust_remote_code=False)
    assert m.device.type == "cuda" and m.dtype == torch.float16
