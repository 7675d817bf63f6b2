"""Loading from every kind of source, with every option. Error cases live in the bad-input table (tests/test_bad_input.py), except the few below that it does not cover."""
import math
import os
import shutil
import time
import pytest
import torch
from alfred_fm import HuggingFaceModel
from alfred_fm.fixtures import tiny_llama
from alfred_fm.loading import STALE_AFTER, _file_key, bundled_model
from reference import assert_same

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


# Error cases the bad-input table (nbs/17_errors.ipynb, tests/test_bad_input.py) has no row or a weaker test for;
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


def test_encoder_only_model_loads_for_encoding(minilm):
    assert minilm.kind == "encoder" and minilm.encode("hello", progress=False).shape == (384,)


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


# ---- issue 13: revision, attn_implementation and other from_pretrained keywords; image-text models; the log line ----

def two_revisions(cache, repo: str, tmp_path):
    "Lay out `repo` in a hub cache with two snapshots: main (a tiny Llama) and a commit tagged v2 (another, adding BOS)."
    entry, main, v2 = cache / ("models--" + repo.replace("/", "--")), "a" * 40, "b" * 40
    shutil.copytree(tiny_llama(tmp_path / "main", seed=0), entry / "snapshots" / main)
    shutil.copytree(tiny_llama(tmp_path / "v2", add_bos=True, seed=1), entry / "snapshots" / v2)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text(main); (entry / "refs" / "v2").write_text(v2)
    return tmp_path / "main", tmp_path / "v2", v2


def test_revision_picks_the_snapshot_for_config_weights_and_tokenizer(tmp_path):
    """A hub id resolves through a Hugging Face cache laid out as the hub client writes it (HF_HUB_OFFLINE=1), and
    revision= reaches the lookup of the configuration, the weights and the tokenizer."""
    cache = tmp_path / "cache"
    main, v2, commit = two_revisions(cache, "alfred-fm/tiny-llama", tmp_path)
    want = {name: HuggingFaceModel(str(d)).score(Q, progress=False).logits for name, d in (("main", main), ("v2", v2))}
    for revision, name in ((None, "main"), ("main", "main"), ("v2", "v2"), (commit, "v2")):
        m = HuggingFaceModel("alfred-fm/tiny-llama", local_path=str(cache), revision=revision, trust_remote_code=False)
        assert_same(m.score(Q, progress=False).logits, want[name], where=str(revision))
        assert (m.tokenizer("a").input_ids[0] == m.tokenizer.bos_token_id) == (name == "v2")   # v2's tokenizer adds BOS
        assert m.source.get("revision") == revision
    with pytest.raises(OSError, match="could not load a model from 'alfred-fm/tiny-llama'"):
        HuggingFaceModel("alfred-fm/tiny-llama", local_path=str(cache), revision="v3")


def test_revision_reaches_every_from_pretrained_call(llama_dir, tmp_path, monkeypatch):
    "The configuration, the weights and the tokenizer are each asked for the revision, and the hub's access keywords."
    import transformers
    cache = tmp_path / "cache"
    hub_cache(cache, "alfred-fm/tiny-llama", llama_dir)
    seen = {}
    for cls in (transformers.AutoConfig, transformers.AutoModelForCausalLM, transformers.AutoTokenizer):
        real = cls.from_pretrained
        def spy(*a, _real=real, _name=cls.__name__, **k):
            seen[_name] = k
            return _real(*a, **k)
        monkeypatch.setattr(cls, "from_pretrained", spy)
    HuggingFaceModel("alfred-fm/tiny-llama", local_path=str(cache), revision="main", local_files_only=True,
                     trust_remote_code=False)
    for name in ("AutoConfig", "AutoModelForCausalLM", "AutoTokenizer"):
        assert seen[name]["revision"] == "main" and seen[name]["local_files_only"] is True, name


def test_remote_code_is_looked_for_at_the_revision(tmp_path):
    "The files trust_remote_code=True would run are read from the snapshot of the revision asked for."
    import json
    from alfred_fm.loading import model_source, remote_code_files
    cache = tmp_path / "cache"
    two_revisions(cache, "alfred-fm/custom", tmp_path)
    snap = cache / "models--alfred-fm--custom" / "snapshots" / ("b" * 40)
    config = json.loads((snap / "config.json").read_text())
    (snap / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoConfig": "configuration_custom.Custom"}}))
    assert remote_code_files(model_source("alfred-fm/custom", str(cache))) == []
    assert remote_code_files(model_source("alfred-fm/custom", str(cache), revision="v2")) == [str(snap / "configuration_custom.py")]


def test_attn_implementation_and_config_settings_reach_the_model(llama_dir):
    eager = HuggingFaceModel(str(llama_dir), attn_implementation="eager", trust_remote_code=False)
    default = HuggingFaceModel(str(llama_dir), trust_remote_code=False)
    assert (eager.model.config._attn_implementation, default.model.config._attn_implementation) == ("eager", "sdpa")
    assert eager.score(Q, progress=False).logits == pytest.approx(default.score(Q, progress=False).logits, abs=1e-4)
    m = HuggingFaceModel(str(llama_dir), rms_norm_eps=1e-2, use_cache=False, trust_remote_code=False)
    assert (m.model.config.rms_norm_eps, m.model.config.use_cache) == (1e-2, False)
    assert m.score(Q, progress=False).logits != pytest.approx(default.score(Q, progress=False).logits, abs=1e-4)


def test_from_pretrained_keywords_pass_through(llama_dir):
    "A from_pretrained argument reaches it: this folder holds only safetensors, so use_safetensors=False finds no weights."
    assert HuggingFaceModel(str(llama_dir), use_safetensors=True, trust_remote_code=False).kind == "causal"
    with pytest.raises(OSError, match="could not load a model from"):
        HuggingFaceModel(str(llama_dir), use_safetensors=False, trust_remote_code=False)


@pytest.mark.parametrize("kwargs, message", [
    (dict(rms_norm_epsilon=1e-5), "did you mean rms_norm_eps=?"),
    (dict(int8=True), "did you mean int_8=?"),
    (dict(cache_dir="/tmp"), "pass local_path= (a hub cache folder) instead"),
    (dict(load_in_8bit=True), "pass int_8=True instead"),
    (dict(output_loading_info=True), "HuggingFaceModel.from_model"),
    (dict(_attn_implementation="eager"), "did you mean attn_implementation=?"),
])
def test_unknown_or_owned_keywords_fail_before_loading(llama_dir, monkeypatch, kwargs, message):
    import re
    import transformers
    def no_load(*a, **k): raise AssertionError("weights were loaded")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_load)
    with pytest.raises(TypeError, match=re.escape(message)):
        HuggingFaceModel(str(llama_dir), trust_remote_code=False, **kwargs)


def test_quantization_config_and_int_8_are_not_both_given(llama_dir):
    pytest.importorskip("bitsandbytes")
    from transformers import BitsAndBytesConfig
    with pytest.raises(TypeError, match="not both"):
        HuggingFaceModel(str(llama_dir), int_8=True, quantization_config=BitsAndBytesConfig(load_in_8bit=True))


def tiny_gemma3(path):
    "A random Gemma 3 of text and images (Gemma3ForConditionalGeneration, not an encoder-decoder) with the BPE tokenizer."
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration
    from alfred_fm.fixtures import bpe_tokenizer
    tok = bpe_tokenizer(add_bos=True)
    cfg = Gemma3Config(
        text_config=dict(vocab_size=len(tok) + 2, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=512,
                         sliding_window=64, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=28, patch_size=14),
        mm_tokens_per_image=4, boi_token_index=len(tok), eoi_token_index=len(tok) + 1, image_token_index=len(tok) + 1)
    torch.manual_seed(0)
    Gemma3ForConditionalGeneration(cfg).save_pretrained(path); tok.save_pretrained(path)
    return path


def test_gemma3_conditional_generation_is_causal_and_scores(tmp_path):
    from alfred_fm.fixtures import causal_reference
    m = HuggingFaceModel(str(tiny_gemma3(tmp_path)), trust_remote_code=False)
    assert m.model.config.architectures == ["Gemma3ForConditionalGeneration"] and not m.model.config.is_encoder_decoder
    assert (m.kind, type(m.model).__name__) == ("causal", "Gemma3ForConditionalGeneration")
    r = m.score(("The sky is", [" blue", " green"]), progress=False)
    ctx, conts = m.backend.query_ids("The sky is", [" blue", " green"])
    for c, cont in zip([" blue", " green"], conts):
        assert math.isfinite(r.logits[c]) and r.logits[c] == pytest.approx(causal_reference(m.model, ctx, cont).sum().item(), abs=1e-4)
    assert m.generate("The sky is", max_new_tokens=3, progress=False).score < 0


def test_llava_loads_as_causal_through_image_text_to_text(tmp_path):
    "A model of images and text that AutoModelForCausalLM does not know loads through AutoModelForImageTextToText."
    from transformers import LlavaConfig, LlavaForConditionalGeneration
    from alfred_fm.fixtures import bpe_tokenizer
    tok = bpe_tokenizer(add_bos=True)
    cfg = LlavaConfig(text_config=dict(model_type="llama", vocab_size=len(tok) + 1, hidden_size=64, intermediate_size=128,
                                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                       max_position_embeddings=512),
                      vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, image_size=28, patch_size=14,
                                         projection_dim=32),
                      image_token_index=len(tok))
    LlavaForConditionalGeneration(cfg).save_pretrained(tmp_path); tok.save_pretrained(tmp_path)
    m = HuggingFaceModel(str(tmp_path), trust_remote_code=False)
    assert (m.kind, type(m.model).__name__) == ("causal", "LlavaForConditionalGeneration")
    assert all(math.isfinite(v) for v in m.score(("The sky is", [" blue", " green"]), progress=False).logits.values())


def test_load_logs_where_the_model_went(llama_dir, caplog):
    import logging
    caplog.set_level(logging.INFO, logger="alfred_fm")
    m = HuggingFaceModel(str(llama_dir), trust_remote_code=False)
    (record,) = [r for r in caplog.records if r.name == "alfred_fm"]
    n = sum(p.numel() for p in m.model.parameters())
    assert record.levelno == logging.INFO
    assert record.getMessage() == (f"loaded LlamaForCausalLM from {str(llama_dir)!r}: {n:,} parameters, float32, "
                                   f"not 8-bit, on {m.device}")


@pytest.mark.slow   # reads the bundled GGUF file three times
def test_gguf_dequantised_once_and_kept(tmp_path, monkeypatch, caplog):
    "The first load keeps the float32 weights in the cache folder; later loads read them, with the same numbers."
    import logging
    from alfred_fm.run import fingerprint
    q = ("Question: Which planet is known as the Red Planet?\nAnswer:", [" Mars", " Venus"])
    monkeypatch.setenv("ALFRED_FM_CACHE", str(tmp_path))
    # what a load killed two days ago left, and the folder another process is writing now
    name = _file_key(bundled_model())
    killed, working = (tmp_path / "gguf" / f"{name}.partial-{pid}" for pid in (101, 102))
    for p in (killed, working): p.mkdir(parents=True); (p / "model.safetensors").write_bytes(b"...")
    for f in (killed / "model.safetensors", killed): os.utime(f, (time.time() - 2 * STALE_AFTER,) * 2)
    with caplog.at_level(logging.WARNING, logger="alfred_fm"): first = HuggingFaceModel.bundled()
    assert "dequantising SmolLM2-135M-Instruct.Q4_1.gguf to float32 once" in caplog.text
    assert sorted((tmp_path / "gguf").iterdir()) == [tmp_path / "gguf" / name, working]   # the killed load's copy is gone
    folder = tmp_path / "gguf" / name
    assert (folder / "complete").exists()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="alfred_fm"): again = HuggingFaceModel.bundled()
    assert "dequantising" not in caplog.text and again.source == first.source
    assert_same(again.score(q, progress=False), first.score(q, progress=False))
    assert fingerprint(again.backend) == fingerprint(first.backend)
    monkeypatch.setenv("ALFRED_FM_CACHE", "off")
    direct = HuggingFaceModel.bundled()
    assert_same(again.score(q, progress=False).logits, direct.score(q, progress=False).logits)


@pytest.mark.slow   # reads the bundled GGUF file twice
def test_gguf_cache_that_cannot_be_written_is_skipped(tmp_path, monkeypatch):
    import transformers
    monkeypatch.setenv("ALFRED_FM_CACHE", str(tmp_path))
    def full(*a, **k): raise OSError(28, "No space left on device")
    monkeypatch.setattr(transformers.PreTrainedModel, "save_pretrained", full)
    with pytest.warns(UserWarning, match="could not keep the dequantised weights"): m = HuggingFaceModel.bundled()
    assert m.kind == "causal" and not list(tmp_path.rglob("*.safetensors"))   # nothing half-written is left
