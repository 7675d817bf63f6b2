#!/usr/bin/env python
"""Candidate scoring, side by side: alfred_fm (sharing prefixes, and not), lm-evaluation-harness, the usual padded approach, and the limit.

    python benchmarks/score_bench.py                  # the bundled SmolLM2-135M, 6 workloads, min of 3 runs
    python benchmarks/score_bench.py --quick          # tiny random model, small workloads: a smoke test

One process, the model loaded once, every method timed on the same data (minimum of `--reps`
runs; a method whose first run takes over `--patience` seconds, lm-eval with batch "auto" on a
CPU, is run once), torch threads fixed. Workloads are built deterministically:

- few-shot:     a 5-shot topic prompt (~400 tokens) before 64 articles of 20-80 tokens, 4 labels (AG News')
- templated:    a ~150-token instruction before 64 texts of 20-80 tokens, 20 candidate labels
- chat:         a system prompt and 3 few-shot turns through the model's chat template, 64 user turns, 4 labels
- mixed:        32 prompts of 10-220 tokens, 4 candidates of 1-30 tokens each
- labels:       16 prompts of ~150-250 tokens, 20 candidate labels of 1-4 tokens (a weak-supervision label set)
- single-token: 32 prompts of ~150-250 tokens, 4 one-token answers (" A" ... " D")

The first three share a long prefix across their queries; the last three share next to nothing.

Methods:
- alfred_fm:    `HuggingFaceModel.score` (each prompt computed once, each shared prefix once for the call,
                token-budget batches)
- sharing off:  the same with `share_prefix=False`: each prompt computed once for its candidates
- lm-eval b16 / lm-eval auto: lm-evaluation-harness's `HFLM.loglikelihood` on the same loaded model
                ("auto", an order of magnitude slower on a CPU, runs only when named in --methods)
- usual:        one left-padded forward per (prompt, candidate) pair, batch 16, full logits
- limit:        a plain forward over only the unique tokens of the job's prefix trie (each shared prefix
                once, each query's own tokens once, each candidate once), cut into equal rows so that
                nothing is padded, with the output layer applied only at the positions that predict a
                candidate token. A scorer's efficiency is limit time / its time.

On "chat", lm-eval moves the template's final newline into the continuation (its rule for a context that
ends in whitespace), so it scores a slightly different split there: its times compare, its numbers differ a little.

It prints a table per workload (seconds, alfred_fm's speed-ups, efficiency, peak resident memory,
largest score difference to the usual approach) and writes `score_bench.json` and `score_bench.png`
into `--out`.
"""
from __future__ import annotations
import argparse, ctypes, gc, json, os, random, sys, threading, time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")       # before tqdm is imported: no loading bars in the table

WORDS = ("time person year way day thing man world life hand part child eye woman place work week case point "
         "government company number group problem fact be have do say get make go know take see come think look "
         "want give use find tell ask work seem feel try leave call good new first last long great little own "
         "other old right big high different small large next early young important few public bad same able "
         "to of in for on with at by from up about into over after beneath under above the and a that I it not "
         "he as you this but his they her she or an will my one all would there their river music science market "
         "election team match season vote policy court law film novel album artist study theory data model").split()
LABELS = [" sports", " politics", " science", " business", " technology", " health", " entertainment", " travel",
          " food and drink", " world news", " education", " the environment", " crime", " religion", " fashion",
          " real estate", " personal finance", " arts and culture", " weather forecast", " opinion piece"]


def _text(rnd, tok, n_tokens):
    "A text of about `n_tokens` tokens of plain words."
    words = []
    while len(tok(" ".join(words), add_special_tokens=False)["input_ids"]) < n_tokens:
        words += [rnd.choice(WORDS) for _ in range(max(1, (n_tokens - len(words)) // 2))]
    return " ".join(words)


AG_NEWS = [" world news", " sports", " business", " science and technology"]


def shared_workloads(tok, rnd, k=1):
    "Few-shot, templated-labels and chat workloads: (prompt, candidates) pairs whose prompts share a long prefix."
    shots = [(_text(rnd, tok, 70 // k).capitalize() + ".", rnd.choice(AG_NEWS)) for _ in range(5)]
    head = "Classify each news article by its topic: world news, sports, business, or science and technology.\n\n"
    few = head + "".join(f"Article: {a}\nTopic:{t}\n\n" for a, t in shots)
    texts = [_text(rnd, tok, rnd.randint(20, 80) // k).capitalize() + "." for _ in range(64 // k)]
    rules = ("You label short texts for a weak-supervision dataset. Read the text, decide which single topic "
             "describes it best, and answer with that topic's name exactly as written in the list. The topics are: "
             + ", ".join(l.strip() for l in LABELS) + ". If a text touches several topics, answer with the one it "
             "spends the most words on; if it touches none of them, answer with the closest. Do not explain your "
             "answer, do not add punctuation, and do not invent a topic outside the list.\n\n")
    if k > 1: rules = rules.split(". ")[0] + ".\n\n"   # --quick: a tiny model's tokenizer makes many more tokens of it
    system = "You are a careful news editor. You answer with the topic of an article, and nothing else."
    turns = [m for a, t in shots[:3 if k == 1 else 1] for m in ({"role": "user", "content": f"Article: {a}\nTopic?"},
                                                 {"role": "assistant", "content": t.strip()})]
    chat = [([{"role": "system", "content": system}, *turns, {"role": "user", "content": f"Article: {x}\nTopic?"}],
             [l.strip() for l in AG_NEWS]) for x in texts]   # the assistant's reply starts with the label
    return {"few-shot": [(few + f"Article: {x}\nTopic:", AG_NEWS) for x in texts],
            "templated": [(rules + f"Text: {x}\nTopic:", LABELS) for x in texts],
            "chat": chat}


def workloads(tok, quick=False):
    "The six workloads, as lists of (prompt, candidates), built from a fixed seed (chat's prompts are conversations)."
    rnd = random.Random(0)
    k = 4 if quick else 1
    mixed = []
    for _ in range(32 // k):
        prompt = _text(rnd, tok, rnd.randint(10, 220)).capitalize() + ". Answer:"
        cands = []
        while len(cands) < 4:
            c = " " + _text(rnd, tok, rnd.randint(1, 30))
            if c not in cands: cands.append(c)
        mixed.append((prompt, cands))
    labels = [("Article: " + _text(rnd, tok, rnd.randint(150, 250)) + ".\nTopic:", LABELS) for _ in range(16 // k)]
    single = [("Question: " + _text(rnd, tok, rnd.randint(150, 250)) + "?\nA, B, C or D? Answer:",
               [" A", " B", " C", " D"]) for _ in range(32 // k)]
    return {**shared_workloads(tok, random.Random(1), k), "mixed": mixed, "labels": labels, "single-token": single}


class PeakRSS:
    "Peak resident memory of this process while the block runs (sampled every 2 ms), in GB."
    def __enter__(self):
        gc.collect()
        try: ctypes.CDLL("libc.so.6").malloc_trim(0)   # hand freed memory back, so each method starts level
        except OSError: pass
        self.peak, self._stop = self._rss(), threading.Event()
        self._t = threading.Thread(target=self._watch, daemon=True); self._t.start()
        return self
    def _rss(self):
        with open("/proc/self/statm") as f: return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    def _watch(self):
        while not self._stop.wait(0.002): self.peak = max(self.peak, self._rss())
    def __exit__(self, *a):
        self._stop.set(); self._t.join(); self.peak = max(self.peak, self._rss()) / 1e9


def method_alfred(m, queries, **kw):
    rs = m.score(queries, progress=False, **kw)
    return [r.logits[c] for r, (_, cands) in zip(rs, queries) for c in cands]


def method_usual(m, queries, batch=16):
    "One left-padded forward per (prompt, candidate) pair, full logits, as most scoring loops do."
    import torch
    from alfred_fm.batching import pad, position_ids
    pairs = [(ctx, c) for ctx, conts in (m.backend.query_ids(p, cs) for p, cs in queries) for c in conts]
    out = []
    with torch.no_grad():
        for s in range(0, len(pairs), batch):
            chunk = pairs[s:s + batch]
            ids, mask = pad([a + b for a, b in chunk], m.backend.pad_id, side="left")
            lp = m.model(input_ids=ids, attention_mask=mask, position_ids=position_ids(mask)).logits.float().log_softmax(-1)
            L = ids.shape[1]
            for i, (_, c) in enumerate(chunk):
                out.append(sum(lp[i, L - len(c) - 1 + j, t].item() for j, t in enumerate(c)))
    return out


def method_lm_eval(lm, queries):
    from lm_eval.api.instance import Instance
    reqs = [Instance(request_type="loglikelihood", doc={}, arguments=(p, c), idx=i)
            for i, (p, c) in enumerate((p, c) for p, cs in queries for c in cs)]
    return [ll for ll, _ in lm.loglikelihood(reqs, disable_tqdm=True)]


def trie_tokens(enc):
    "The unique tokens of the job's prefix trie (each (prompt + candidate) sequence inserted), in depth-first order."
    root, stream = {}, []
    for ctx, conts in enc:
        for c in conts:
            node = root
            for t in ctx + c:
                if t not in node: node[t] = {}; stream.append(t)
                node = node[t]
    return stream


def method_limit(m, queries, row=512, batch=8):
    "Plain forward over the unique tokens of the prefix trie, in unpadded rows; output layer where scored."
    import torch
    enc = [m.backend.query_ids(p, cs) for p, cs in queries]
    stream = trie_tokens(enc)
    n_head = sum(1 + sum(len(c) - 1 for c in conts) for _, conts in enc)
    body, head = m.model.base_model, m.model.get_output_embeddings()
    rows = [stream[i:i + row] for i in range(0, len(stream), row)]
    with torch.no_grad():
        for s in range(0, len(rows), batch):
            for r in ([rows[s:s + batch]] if len(rows[s + min(batch, len(rows) - s) - 1]) == row
                      else [[x] for x in rows[s:s + batch]]):   # the short last row runs alone: no padding
                h = body(input_ids=torch.tensor(r)).last_hidden_state.reshape(-1, h_dim(m))
                take = min(n_head, h.shape[0]); n_head -= take
                if take: head(h[:take]).float().log_softmax(-1)
    return None


def h_dim(m): return m.model.get_input_embeddings().weight.shape[1]


def timed(fn, reps, patience=60.0):
    "Minimum seconds over `reps` runs, and the last result; a method whose run takes over `patience` s runs once."
    best, result, runs = float("inf"), None, 0
    while runs < reps and not (runs and best > patience):
        t = time.perf_counter(); result = fn(); best = min(best, time.perf_counter() - t); runs += 1
    return best, result, runs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model to load (default: the bundled SmolLM2-135M-Instruct)")
    p.add_argument("--quick", action="store_true", help="tiny random model and a quarter of each workload, 1 run")
    p.add_argument("--reps", type=int, default=3, help="runs per method; the minimum is reported")
    p.add_argument("--patience", type=float, default=60.0, help="a method whose run takes longer (s) is not repeated")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--workloads", default="few-shot,templated,chat,mixed,labels,single-token")
    p.add_argument("--methods", default="alfred_fm,sharing off,lm-eval b16,usual,limit")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    a = p.parse_args(argv)
    import torch
    torch.set_num_threads(a.threads)
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error(); hf_logging.disable_progress_bar()
    from alfred_fm import HuggingFaceModel
    if a.quick:
        from alfred_fm.fixtures import tiny_llama
        a.model, a.reps = a.model or str(tiny_llama()), 1
    m = HuggingFaceModel(a.model) if a.model else HuggingFaceModel.bundled()
    if not m.tokenizer.chat_template:   # the tiny random model of --quick: a ChatML template, as SmolLM2-Instruct's
        m.tokenizer.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                                     "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    print(f"{m!r}, torch {torch.__version__}, {a.threads} threads, min of {a.reps} run(s)")
    lms = {}
    if any(x.startswith("lm-eval") for x in a.methods.split(",")):
        from lm_eval.models.huggingface import HFLM
        for name, bs in (("lm-eval b16", 16), ("lm-eval auto", "auto")):
            if name not in a.methods.split(","): continue
            lms[name] = HFLM(pretrained=m.model, tokenizer=m.tokenizer, batch_size=bs,
                             prefix_token_id=m.tokenizer.eos_token_id)
    runners = {"alfred_fm": lambda q, kw: method_alfred(m, q, **kw),
               "sharing off": lambda q, kw: method_alfred(m, q, share_prefix=False, **kw),
               "usual": lambda q, kw: method_usual(m, texts(q)), "limit": lambda q, kw: method_limit(m, texts(q)),
               **{k: (lambda q, kw, lm=lm: method_lm_eval(lm, texts(q))) for k, lm in lms.items()}}
    texts = lambda q: [(m.backend.templated(p, chat=not isinstance(p, str)), cs) for p, cs in q]   # a conversation as its chat text
    methods = [x for x in a.methods.split(",") if x in runners]
    wls = workloads(m.tokenizer, a.quick)
    report = {"model": repr(m), "torch": torch.__version__, "threads": a.threads, "reps": a.reps, "workloads": {}}
    for wname in a.workloads.split(","):
        queries = wls[wname]
        kw = {"chat": True} if not isinstance(queries[0][0], str) else {}
        enc = [m.backend.query_ids(p, cs) for p, cs in texts(queries)]
        n_pairs = sum(len(cs) for _, cs in queries)
        unique = len(trie_tokens(enc))
        padded_pairs = sum(len(ctx) + len(c) for ctx, conts in enc for c in conts)
        res = {"queries": len(queries), "pairs": n_pairs, "trie_tokens": unique, "pair_tokens": padded_pairs, "methods": {}}
        scores = {}
        for name in methods:
            with PeakRSS() as mem:
                secs, out, runs = timed(lambda: runners[name](queries, kw), a.reps, a.patience)
            if name == "alfred_fm": res["alfred_fm_stats"] = dict(m.last_stats)
            res["methods"][name] = {"seconds": secs, "runs": runs, "peak_rss_gb": mem.peak}
            if out is not None: scores[name] = out
        if "usual" in scores:
            for name, out in scores.items():
                res["methods"][name]["max_abs_diff_to_usual"] = max(abs(x - y) for x, y in zip(out, scores["usual"]))
        t = {k: v["seconds"] for k, v in res["methods"].items()}
        if "alfred_fm" in t:
            for other in ("sharing off", "lm-eval b16", "lm-eval auto", "usual"):
                if other in t: res[f"speedup_vs_{other}"] = t[other] / t["alfred_fm"]
            if "limit" in t: res["efficiency"] = t["limit"] / t["alfred_fm"]
        report["workloads"][wname] = res
        print(f"\n{wname}: {len(queries)} queries, {n_pairs} pairs, {unique} unique tokens in the prefix trie "
              f"({padded_pairs} as one row per pair)")
        print(f"  {'method':<14}{'seconds':>9}{'runs':>6}{'peak RSS GB':>13}{'max |diff| to usual':>21}")
        for name, r in res["methods"].items():
            d = r.get("max_abs_diff_to_usual")
            print(f"  {name:<14}{r['seconds']:>9.2f}{r['runs']:>6}{r['peak_rss_gb']:>13.2f}{'' if d is None else f'{d:>21.2e}'}")
        for k in [k for k in res if k.startswith("speedup") or k == "efficiency"]:
            print(f"  {k.replace('_', ' ')}: {res[k]:.2f}")
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "score_bench.json").write_text(json.dumps(report, indent=2))
    plot(report, a.out / "score_bench.png")
    print(f"\nwrote {a.out / 'score_bench.json'} and {a.out / 'score_bench.png'}")
    return report


def plot(report, path):
    "Grouped bars: seconds per method, one group per workload."
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    wls = list(report["workloads"])
    methods = list(next(iter(report["workloads"].values()))["methods"])
    fig, ax = plt.subplots(figsize=(max(9, 2.2 * len(wls)), 4))
    w = 0.8 / len(methods)
    for i, meth in enumerate(methods):
        ys = [report["workloads"][wl]["methods"][meth]["seconds"] for wl in wls]
        bars = ax.bar([x + i * w for x in range(len(wls))], ys, w, label=meth)
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks([x + w * (len(methods) - 1) / 2 for x in range(len(wls))], wls)
    ax.set_yscale("log")   # lm-eval's "auto" batch size on a CPU is an order of magnitude slower than the rest
    ax.set_ylabel("seconds (min of runs, log scale)")
    ax.set_title(f"Candidate scoring, {report['threads']} CPU threads")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout(); fig.savefig(path, dpi=120); plt.close(fig)


if __name__ == "__main__":
    main()
