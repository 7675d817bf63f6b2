"""The plainest computations, one input at a time and unpadded: what every fast path must equal."""
import torch


def causal_reference(model, ctx, cont):
    "Summed log-probability of `cont` after `ctx`: one unpadded forward, full logits, float32 log-softmax."
    with torch.no_grad():
        lp = model.model(torch.tensor([ctx + cont])).logits[0].float().log_softmax(-1)
    return sum(lp[len(ctx) - 1 + i, t].item() for i, t in enumerate(cont))


def seq2seq_reference(model, ctx, cont):
    "Summed log-probability of `cont` given encoder input `ctx`, with transformers' own label shifting."
    with torch.no_grad():
        lp = model.model(input_ids=torch.tensor([ctx]), labels=torch.tensor([cont])).logits[0].float().log_softmax(-1)
    return sum(lp[i, t].item() for i, t in enumerate(cont))


def reference_scores(model, query, **kw):
    "Reference log-probability of each candidate of a `(prompt, candidates)` query."
    prompt, cands = query
    ctx, conts = model._encode_query(prompt, cands, **kw)
    ref = seq2seq_reference if model.kind == "seq2seq" else causal_reference
    return {c: ref(model, ctx, k) for c, k in zip(cands, conts)}
