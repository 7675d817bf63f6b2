"""Chat templates (issue 13, part 1): with `chat=True` a prompt is the user's turn of the tokenizer's own chat template
with its generation prompt, and each candidate is scored as the start of the assistant's reply. The ids must be exactly
`apply_chat_template(..., add_generation_prompt=True)` followed by the candidate's, and the scores equal a one-pair
unpadded reference built from those ids. Checked on the bundled SmolLM2-Instruct (its own template) and on a tiny
Llama whose tokenizer adds a BOS and whose template writes one as text (so a doubled BOS would show)."""
import pytest
import torch

from alfred_fm import RankedQuery
from alfred_fm.fixtures import CHAT_TEMPLATE, causal_reference
from alfred_fm.inspectors import inspect_candidates
from alfred_fm.options import ScoreOptions
from alfred_fm.scoring import ScoringPlan
from alfred_fm.tokens import ChatPrompt, chat_text
from reference import assert_same

TEMPLATE = CHAT_TEMPLATE
QUERIES = [("Is the sky blue?", ["yes", "no"]), ("Name a colour.", ["Red", "Blue", "green", "dark blue"])]
SYSTEM = "Answer in one word."


@pytest.fixture
def templated(chat_llama):
    "A tiny Llama whose tokenizer adds a BOS, with a chat template that writes the BOS as text (conftest's `chat_llama`)."
    return chat_llama


@pytest.fixture(params=["templated", "smol"])
def model(request): return request.getfixturevalue(request.param)


def template_ids(m, prompt, system=SYSTEM) -> list[int]:
    msgs = ([{"role": "system", "content": system}] if system is not None else []) + [{"role": "user", "content": prompt}]
    return list(m.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)["input_ids"])


def own_ids(m, text) -> list[int]: return list(m.tokenizer(text, add_special_tokens=False)["input_ids"])


def test_ids_are_the_templates_then_the_candidate(model):
    for prompt, cands in QUERIES:
        want = template_ids(model, prompt)
        ctx, conts, tail = model.backend.split_query(model.backend.templated(prompt, True, SYSTEM), cands)
        assert (ctx, tail) == (want, [])
        for c, k in zip(cands, conts): assert k == own_ids(model, c), c   # the reply starts right after the template
    if model.backend.bos:   # the tokenizer adds a BOS and the template writes one: exactly one, at the start
        bos = model.backend.bos[0]
        assert want[0] == bos and want.count(bos) == 1


def test_scores_equal_the_one_pair_reference(model):
    got = model.score([(p, c) for p, c in QUERIES], chat=True, system=SYSTEM, progress=False)
    for (prompt, cands), r in zip(QUERIES, got):
        ctx = template_ids(model, prompt)
        for c in cands:
            ref = causal_reference(model.model, ctx, own_ids(model, c)).double().sum().item()
            assert r.logits[c] == pytest.approx(ref, abs=1e-4), (prompt, c)
    alone = [model.score(q, chat=True, system=SYSTEM, progress=False) for q in QUERIES]   # batching changes nothing
    for a, g in zip(alone, got): assert a.logits == pytest.approx(g.logits, abs=1e-4)


def test_chat_changes_the_numbers(model):
    plain = model.score(QUERIES[0], progress=False).logits
    chat = model.score(QUERIES[0], chat=True, progress=False).logits
    assert plain != pytest.approx(chat, abs=1e-3)


def test_generation_continues_the_assistants_turn(model):
    got = model.generate(["Is the sky blue?", "Say hello."], chat=True, system=SYSTEM, max_new_tokens=6, progress=False)
    for prompt, r in zip(["Is the sky blue?", "Say hello."], got):
        ids = torch.tensor([template_ids(model, prompt)])
        with torch.no_grad():
            out = model.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=6, do_sample=False,
                                       pad_token_id=model.backend.pad_id)
        new = out[0, ids.shape[1]:].tolist()
        if model.backend.eos_id in new: new = new[:new.index(model.backend.eos_id) + 1]
        assert r.prediction == model.tokenizer.decode(new, skip_special_tokens=True)


def test_content_free_prompts_go_through_the_template(templated):
    plan = ScoringPlan.build(templated.backend, [RankedQuery(*QUERIES[0])],
                             ScoreOptions(chat=True, system=SYSTEM, calibrate="Q: {}"), 2048)
    content_free = [pq.query.prompt for pq in plan.queries[1:]]
    assert content_free == [chat_text(templated.tokenizer, f"Q: {x}", SYSTEM) for x in ("N/A", "", "[MASK]")]
    assert all(isinstance(p, ChatPrompt) for p in content_free)
    r = templated.score(QUERIES[0], chat=True, system=SYSTEM, calibrate="Q: {}", progress=False)
    assert r.adjusted is not None
    assert_same(r.logits, templated.score(QUERIES[0], chat=True, system=SYSTEM, progress=False).logits)


def test_run_and_the_inspector_take_chat(templated):
    want = templated.score(QUERIES[0], chat=True, progress=False)
    got = templated.run([QUERIES[0], "Say hello."], chat=True, max_new_tokens=3, progress=False)
    assert_same(got[0], want)
    assert_same(got[1], templated.generate("Say hello.", chat=True, max_new_tokens=3, progress=False))
    w = inspect_candidates(templated, QUERIES[0], chat=True, normalize="char")
    assert_same(w.response.logits, want.logits)


def test_the_cache_key_holds_chat(templated):
    plain, chat = templated.query_key(QUERIES[0], {}), templated.query_key(QUERIES[0], {"chat": True})
    assert plain != chat != templated.query_key(QUERIES[0], {"chat": True, "system": SYSTEM})


def test_run_checks_templated_prompts_before_any_work(templated, monkeypatch):
    "`run` checks every prompt as it will be generated from (templated) before the first forward pass, ranked ones too."
    b = templated.backend
    plain, laid = len(b.prompt_ids("Say hello.")), len(b.prompt_ids(b.templated("Say hello.", True)))
    room = b.max_length - plain   # fits as a plain prompt, not as a templated one
    assert laid > plain
    def forbidden(*a, **k): raise AssertionError("the model ran before the too-long prompt was reported")
    monkeypatch.setattr(templated.model, "forward", forbidden)
    with pytest.raises(ValueError, match=r"query 1 \(prompt \+ max_new_tokens\) has \d+ tokens"):
        templated.run([QUERIES[0], "Say hello."], chat=True, max_new_tokens=room, progress=False)


FEW_SHOT = [{"role": "user", "content": "Is snow white?"}, {"role": "assistant", "content": "yes"},
            {"role": "user", "content": "Is coal white?"}, {"role": "assistant", "content": "no"},
            {"role": "user", "content": "Is the sky blue?"}]


def test_few_shot_conversation_scores_equal_the_reference(model, tmp_path):
    "Few-shot turns as a list of messages: the template's ids for the whole conversation, then the reply; cached as such."
    ctx = list(model.tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM}, *FEW_SHOT],
                                                   add_generation_prompt=True, tokenize=True)["input_ids"])
    q = RankedQuery(FEW_SHOT, ["yes", "no"])
    r = model.score(q, chat=True, system=SYSTEM, progress=False)
    for c in q.candidates:
        ref = causal_reference(model.model, ctx, own_ids(model, c)).double().sum().item()
        assert r.logits[c] == pytest.approx(ref, abs=1e-4), c
    mixed = model.run([(FEW_SHOT, ["yes", "no"]), ("Is the sky blue?", ["yes", "no"]), FEW_SHOT], chat=True,
                      system=SYSTEM, max_new_tokens=3, cache=str(tmp_path / "c.sqlite"), progress=False)
    assert mixed[0].logits == pytest.approx(r.logits, abs=1e-4) and mixed[1].logits != mixed[0].logits
    again = model.run([(FEW_SHOT, ["yes", "no"]), FEW_SHOT], chat=True, system=SYSTEM, max_new_tokens=3,
                      cache=str(tmp_path / "c.sqlite"), progress=False)
    assert model.last_run_stats["computed"] == 0 and again == [mixed[0], mixed[2]]
    g = model.generate(FEW_SHOT, chat=True, system=SYSTEM, max_new_tokens=3, progress=False)
    assert g == mixed[2]


def test_conversation_needs_chat_and_one_system_message(templated):
    with pytest.raises(ValueError, match="is a conversation for the model's chat template: pass chat=True"):
        templated.score((FEW_SHOT, ["yes", "no"]))
    with pytest.raises(ValueError, match="has a system message and system= gives another"):
        templated.generate([{"role": "system", "content": "Be brief."}, *FEW_SHOT], chat=True, system=SYSTEM)


def test_hidden_state_of_a_templated_prompt_is_of_the_template_ids(templated):
    "score(hidden_state=True, chat=True) embeds the prompt as the model read it: the template's ids, one BOS."
    from alfred_fm.hidden_states import reduced_states
    r = templated.score(QUERIES[0], chat=True, system=SYSTEM, hidden_state=True, progress=False)
    ids = torch.tensor([template_ids(templated, QUERIES[0][0])])
    want = reduced_states(templated.backend, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, "mean")[0]
    assert_same(r.embeddings, want)
