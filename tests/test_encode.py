"""Embeddings: equal to sentence-transformers, and independent of what else is in the batch."""
import pytest
import torch

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground, while a crowd watches from the stands and cheers.",
    "Ünïcode, 日本語 and emoji 🙂 in one sentence.",
    "Short.",
    "A monkey is playing drums, and the crowd in the small, dark, crowded club dances along until late.",
]


def test_minilm_mean_equals_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    from alfred_fm.fixtures import minilm_path
    ref = st.SentenceTransformer(str(minilm_path()), device="cpu").encode(SENTENCES, convert_to_tensor=True)
    ours = minilm.encode(SENTENCES, reduction="mean", progress=False)
    cos = torch.nn.functional.cosine_similarity(ours, ref.cpu(), dim=-1)
    assert cos.min().item() >= 0.9999, cos
    # the model's Normalize module is a unit-length scaling: with normalize=True the vectors match outright
    assert (minilm.encode(SENTENCES, normalize=True, progress=False) - ref.cpu()).abs().max() <= 1e-4


@pytest.mark.parametrize("reduction", ["mean", "sum", "first", "last", "max"])
@pytest.mark.parametrize("which", ["minilm", "smol", "t5"])
def test_embedding_independent_of_batch(request, which, reduction):
    "A text embedded alone equals the same text embedded beside longer ones (padding never counts)."
    m = request.getfixturevalue(which)
    alone = torch.stack([m.encode(s, reduction=reduction, progress=False) for s in SENTENCES])
    together = m.encode(SENTENCES, reduction=reduction, progress=False)
    scale = alone.abs().max().item()
    assert (together - alone).abs().max().item() <= 1e-4 * max(1.0, scale)


def test_layers_and_reductions(smol):
    n = smol.model.config.num_hidden_layers
    e0 = smol.encode(SENTENCES[:2], layer=0, progress=False)
    emb = smol.model.get_input_embeddings().weight
    ids = smol.backend.text_ids(SENTENCES[:1])[0]
    assert (e0[0] - emb[ids].mean(0)).abs().max() <= 1e-4
    assert (smol.encode(SENTENCES[:2], layer=n, progress=False)
            - smol.encode(SENTENCES[:2], layer=-1, progress=False)).abs().max() <= 1e-4
    with pytest.raises(IndexError, match="out of range"):
        smol.encode("x", layer=n + 1)
    with pytest.raises(ValueError, match="unknown reduction='avg'"):
        smol.encode("x", reduction="avg")
    parts = smol.encode(SENTENCES[:3], reduction="none", progress=False)
    assert [p.shape[0] for p in parts] == [len(t) for t in smol.backend.text_ids(SENTENCES[:3])]


def test_every_public_call_leaves_its_own_statistics(llama):
    "`last_stats` describes the last call, whichever it was: `encode` and `token_score` reset and fill it too."
    texts = ["a short text", "a longer text than the other one, by some way"]
    llama.score(("Q: A:", [" yes", " no"]), progress=False)
    assert llama.last_stats["items"] == 1
    llama.encode(texts, progress=False, batch_size=1)
    assert (llama.last_stats["items"], llama.last_stats["batches"]) == (2, 2)
    assert llama.last_stats["tokens"] == sum(len(llama.tokenizer(t)["input_ids"]) for t in texts)
    llama.token_score(texts[:1], progress=False)
    assert llama.last_stats["items"] == 1 and llama.last_stats["tokens"] > 0
    llama.generate("Q:", max_new_tokens=2, progress=False)
    assert llama.last_stats["items"] == 1


def test_every_public_call_says_its_route(llama):
    "`last_stats['path']` and `['fallback']` are the route the backend chose, for every public call, and nothing older."
    calls = {"score": lambda: llama.score(("Q: A:", [" yes", " no"]), progress=False),
             "score_batch": lambda: llama._score_batch([("Q: A:", " yes")]),
             "generate": lambda: llama.generate("Q:", max_new_tokens=2, progress=False),
             "texts": lambda: llama.loglikelihood("a text", progress=False),
             "encode": lambda: llama.encode("a text", progress=False)}
    for call, run in [*calls.items(), ("texts", lambda: llama.token_score("a text", progress=False))]:
        llama.last_stats = {"path": "stale"}
        run()
        route = llama.backend.route(call)
        assert (llama.last_stats["path"], llama.last_stats["fallback"]) == (route.path, route.fallback), call
    assert [llama.backend.route(c).path for c in calls] == ["packed rows", "one row per pair", "each prompt whole",
                                                             "one row per window", "masked reductions of right-padded rows"]


def test_the_prompts_hidden_state_has_one_definition(llama):
    "`score`, `_score_batch` and `encode` give a prompt the same hidden state: the prompt as `encode` reads its text."
    prompt = "Is the sky blue? Answer: "   # scoring hands its trailing space to the candidates; the prompt's state keeps it
    want = llama.encode(prompt, reduction="last", progress=False)
    batch = llama._score_batch([(prompt, "yes"), (prompt, "no")], hidden_state=True, reduction="last")
    ranked = llama.score((prompt, ["yes", "no"]), hidden_state=True, reduction="last", progress=False)
    for got in (batch[0]["hidden_state"], batch[1]["hidden_state"], ranked.embeddings):
        assert torch.allclose(got, want, atol=1e-5)
    ctx, _, tail = llama.backend.split_query(prompt, ["yes"])
    assert len(ctx) + len(tail) < len(llama.tokenizer(prompt)["input_ids"])   # the scored ids are not what is embedded
