#!/usr/bin/env python
"""How cost grows with the work: job size (10^3 to 2·10^5 queries) and prompt length (256 to 32,768 tokens).

    python benchmarks/scale_bench.py                       # both sweeps at full size (about 40 minutes on 2 cores)
    python benchmarks/scale_bench.py --quick               # small sizes: a smoke test (about 4 minutes)
    python benchmarks/scale_bench.py --sweep prompts --sizes 256,4096,16384
    python benchmarks/scale_bench.py --sweep none --merge a.log b.log   # one report from earlier runs' printed lines

Every measurement (one size, one method) runs in a fresh process, so that its peak resident memory is its own;
memory is reported above the loaded, warmed-up model; a short run (up to 10,000 queries, or 1,024 tokens) is timed 3
times and its fastest taken. Torch threads are fixed (2).

**Job size.** A templated sentiment job: a 31-token instruction shared by every query, a review of 8-30 words, three
label words; a tiny random Llama (2 layers of width 64) with SmolLM2's tokenizer, so that the library's own work
shows, not the model's. Methods: `score` in memory; `run` with a cache file; `score` with calibration; `score` through
the chat template; lm-evaluation-harness's HFLM (batch 64) up to where it fits. Reported: seconds, queries per second,
peak memory growth, the memory the returned responses hold, and the growth beyond them.

**Prompt length.** One query, 4 short candidates, a prompt of L tokens; a random-weight Llama of SmolLM2's widths
(4 layers, 65,536 positions), float32. Methods: `score`; *the limit*, written here with plain transformers: the prompt
once through the model's causal attention into a `DynamicCache`, then each candidate against it (cropped back after
each), the output layer only where a candidate token is predicted; lm-eval's HFLM where it fits. *Shared*: two
documents of L tokens after one 128-token instruction, 4 candidates each (`score`, against each whole prompt through
the limit above, which computes the instruction twice: 128 of 2 × (128 + L) tokens). Also, on the same
model, whole-text `loglikelihood` of an L-token text against its limit (the text through the causal kernel, the output
layer over 1,024 positions at a time), and `generate` (8 new tokens) from an L-token prompt against transformers'
own `generate`.

It prints a table per sweep with the ratio to the limit (or to the smallest size), and writes `scale_bench.json` and a
two-panel log-log figure `scale_bench.png` to `--out`.
"""
from __future__ import annotations
import argparse, ctypes, gc, json, os, random, subprocess, sys, tempfile, threading, time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")   # as a user's notebook has it: each size runs in a fresh process
os.environ.setdefault("TQDM_DISABLE", "1")

JOB_SIZES = [1000, 10000, 50000, 200000]
PROMPT_SIZES = [256, 512, 1024, 2048, 4096, 8192, 16384, 32768]
JOB_METHODS = ["score", "run cache", "score calibrate", "score chat", "lm-eval"]
PROMPT_METHODS = ["score", "limit", "lm-eval", "score shared", "limit shared", "loglikelihood", "loglikelihood limit",
                  "lm-eval rolling", "generate", "generate hf"]
LM_EVAL_MAX = {"lm-eval": 10000, "lm-eval prompts": 8192, "lm-eval rolling": 8192}   # the next size needs over 24 GB
GENERATE_MAX = 16384

WORDS = ("good bad great film movie plot actor story slow boring fun loved hated acting music scene end long short "
         "funny sad dark bright camera script cast role hero villain watch again never always best worst the a and "
         "but it was is this that with very quite really not too so much").split()
INSTRUCTION = ("You label movie reviews for a sentiment dataset. Read the review and answer with one word: "
               "positive, negative or neutral.\n\n")
LABELS = [" positive", " negative", " neutral"]


class PeakRSS:
    "Peak resident memory of this process while the block runs (sampled every 2 ms), in MB."
    def __enter__(self):
        trim()
        self.base = self.peak = rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._watch, daemon=True); self._t.start()
        return self
    def _watch(self):
        while not self._stop.wait(0.002): self.peak = max(self.peak, rss())
    def __exit__(self, *a):
        self._stop.set(); self._t.join(); self.peak = max(self.peak, rss())
        self.growth = (self.peak - self.base) / 1e6


def deep_size(obj) -> int:
    "Bytes of `obj` and of every object it reaches (each counted once): what the returned responses themselves hold."
    seen, stack, total = set(), [obj], 0
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, type): continue
        seen.add(id(o)); total += sys.getsizeof(o)
        if isinstance(o, dict): stack += [*o.keys(), *o.values()]
        elif isinstance(o, (list, tuple, set, frozenset)): stack += list(o)
        elif hasattr(o, "__dict__"): stack.append(vars(o))
        elif hasattr(o, "__slots__"): stack += [getattr(o, a) for a in o.__slots__ if hasattr(o, a)]
    return total


def rss() -> int:
    with open("/proc/self/statm") as f: return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def trim():
    "Collect garbage and hand freed heap memory back, so that a measurement starts level."
    gc.collect()
    try: ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError: pass


def smollm2_tokenizer():
    "SmolLM2's tokenizer, read from the bundled model (its dequantised copy, made once)."
    from transformers import AutoTokenizer
    from alfred_fm.loading import bundled_model, model_source, dequantised
    return AutoTokenizer.from_pretrained(dequantised(model_source(str(bundled_model())))["pretrained_model_name_or_path"])


def job_model():
    "A tiny random Llama (2 layers, width 64) with SmolLM2's tokenizer, wrapped as a `HuggingFaceModel`."
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from alfred_fm import HuggingFaceModel
    tok = smollm2_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    return HuggingFaceModel.from_model(LlamaForCausalLM(cfg).eval(), tok)


def long_model():
    "A random-weight Llama of SmolLM2-135M's widths, 4 layers, 65,536 positions, with SmolLM2's tokenizer."
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    from alfred_fm import HuggingFaceModel
    tok = smollm2_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=576, intermediate_size=1536, num_hidden_layers=4,
                      num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=65536, rope_theta=100000.0,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    return HuggingFaceModel.from_model(LlamaForCausalLM(cfg).eval(), tok)


def job_queries(n: int) -> list[tuple[str, list[str]]]:
    "The templated sentiment job: n (prompt, labels) pairs, from a fixed seed."
    rnd = random.Random(0)
    return [(INSTRUCTION + "Review: " + " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(8, 30))).capitalize()
             + ".\nSentiment:", LABELS) for _ in range(n)]


def long_ids(tok, n: int, seed: int = 0) -> list[int]:
    "n token ids of plain words (a random text, cut to n tokens)."
    rnd = random.Random(seed)
    text = " ".join(rnd.choice(WORDS) for _ in range(n))
    ids = tok(text, add_special_tokens=False)["input_ids"]
    while len(ids) < n: ids = ids + ids
    return ids[:n]


def hflm(m, batch=64, prefix_token_id=None):
    "lm-eval's HF model on our loaded model (its start token: the EOS unless given)."
    from lm_eval.models.huggingface import HFLM
    return HFLM(pretrained=m.model, tokenizer=m.tokenizer, batch_size=batch,
                prefix_token_id=m.tokenizer.eos_token_id if prefix_token_id is None else prefix_token_id)


def lm_eval_loglikelihood(lm, pairs):
    from lm_eval.api.instance import Instance
    reqs = [Instance(request_type="loglikelihood", doc={}, arguments=(p, c), idx=i) for i, (p, c) in enumerate(pairs)]
    return [ll for ll, _ in lm.loglikelihood(reqs, disable_tqdm=True)]


def limit_score(model, ctx: list[int], conts: list[list[int]]) -> list[float]:
    "The prompt once through the causal kernel into a cache, each candidate against it; the output layer where scored."
    import torch
    from transformers import DynamicCache
    body, head = model.base_model, model.get_output_embeddings()
    with torch.no_grad():
        cache = DynamicCache()
        body(input_ids=torch.tensor([ctx[:-1]]), use_cache=True, past_key_values=cache)
        out = []
        for c in conts:
            h = body(input_ids=torch.tensor([ctx[-1:] + c[:-1]]), use_cache=True, past_key_values=cache).last_hidden_state
            lp = head(h[0]).float().log_softmax(-1)
            out.append(lp[torch.arange(len(c)), torch.tensor(c)].sum().item())
            cache.crop(-len(c))   # back to the prompt alone
    return out


def limit_text(model, start: list[int], ids: list[int], step: int = 1024) -> float:
    "A text's log-likelihood in one window: through the causal kernel, the output layer over `step` positions at a time."
    import torch
    body, head = model.base_model, model.get_output_embeddings()
    with torch.no_grad():
        h = body(input_ids=torch.tensor([start + ids[:-1]]), use_cache=False).last_hidden_state[0]
        target, total = torch.tensor(ids), 0.0
        for s in range(0, len(ids), step):
            lp = head(h[s:s + step]).float().log_softmax(-1)
            total += lp[torch.arange(lp.shape[0]), target[s:s + step]].double().sum().item()
    return total


def measure(spec: dict) -> dict:
    "One size of one method, in this process: seconds, peak memory growth, and what the method returned."
    import torch
    torch.set_num_threads(spec.get("threads", 2))
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error(); hf_logging.disable_progress_bar()
    import warnings; warnings.simplefilter("ignore")
    sweep, n, method = spec["sweep"], spec["size"], spec["method"]
    res = {"sweep": sweep, "size": n, "method": method}
    if sweep == "jobs":
        m = job_model()
        qs, warm = job_queries(n), job_queries(64)
        kw = {"calibrate": True} if method == "score calibrate" else {"chat": True} if method == "score chat" else {}
        tmp = tempfile.mkdtemp()
        if method == "lm-eval":
            lm = hflm(m)
            pairs = lambda q: [(p, c) for p, cs in q for c in cs]
            lm_eval_loglikelihood(lm, pairs(warm))
            run = lambda: lm_eval_loglikelihood(lm, pairs(qs))
        elif method == "run cache":
            m.run(warm, cache=f"{tmp}/warm.sqlite", progress=False)
            files = (f"{tmp}/job{i}.sqlite" for i in range(10))   # a new cache file each run: nothing found in it
            run = lambda: m.run(qs, cache=next(files), progress=False)
        else:
            m.score(warm, progress=False, **kw)
            run = lambda: m.score(qs, progress=False, **kw)
    else:
        m = long_model()
        tok, model = m.tokenizer, m.model
        ctx = long_ids(tok, n)
        conts = [long_ids(tok, k, seed=k) for k in (2, 3, 1, 4)]
        wctx = long_ids(tok, 64)
        if method in ("score", "lm-eval"):   # the prompt as text: decode its ids (plain words, so they round-trip)
            prompt, cands = tok.decode(ctx), [" " + tok.decode(c) for c in conts]
            if method == "score":
                m.score((tok.decode(wctx), cands), progress=False)
                run = lambda: [r for r in m.score((prompt, cands), progress=False).logits.values()]
            else:
                lm = hflm(m, batch=4)
                lm_eval_loglikelihood(lm, [(tok.decode(wctx), c) for c in cands])
                run = lambda: lm_eval_loglikelihood(lm, [(prompt, c) for c in cands])
            res["prompt_tokens"] = len(m.backend.prompt_ids(prompt))
        elif method in ("score shared", "limit shared"):   # two documents of L tokens after one 128-token instruction
            head, cands = tok.decode(long_ids(tok, 128, seed=99)), [" " + tok.decode(c) for c in conts]
            docs = [(head + tok.decode(long_ids(tok, n, seed=s)), cands) for s in (1, 2)]
            warm = [(head + tok.decode(long_ids(tok, 64, seed=s)), cands) for s in (1, 2)]
            if method == "score shared":
                m.score(warm, progress=False)
                def run():
                    out = m.score(docs, progress=False)
                    res["path"] = m.last_stats["path"]   # the way the documents went
                    return [x for r in out for x in r.logits.values()]
            else:   # each whole prompt through the causal kernel (the instruction twice: 128 of 2 × (128 + L) tokens)
                ids = [m.backend.query_ids(*q) for q in docs]
                limit_score(model, *m.backend.query_ids(*warm[0]))
                run = lambda: [x for i, c in ids for x in limit_score(model, i, c)]
            res["prompt_tokens"] = len(m.backend.prompt_ids(docs[0][0]))
        elif method == "limit":   # the very ids `score` reads for the same texts
            ids, cids = m.backend.query_ids(tok.decode(ctx), [" " + tok.decode(c) for c in conts])
            wids, wcids = m.backend.query_ids(tok.decode(wctx), [" " + tok.decode(c) for c in conts])
            limit_score(model, wids, wcids)
            run = lambda: limit_score(model, ids, cids)
        elif method in ("loglikelihood", "loglikelihood limit", "lm-eval rolling"):
            text = tok.decode(ctx)
            ids = tok(text, add_special_tokens=False)["input_ids"]
            start = list(m.backend.start)   # what `loglikelihood` reads a text after (here the EOS: no BOS is added)
            if method == "loglikelihood":
                m.loglikelihood(tok.decode(wctx), progress=False)
                run = lambda: m.loglikelihood(text, progress=False).logprob
            elif method == "loglikelihood limit":
                limit_text(model, start, wctx)
                run = lambda: limit_text(model, start, ids)
            else:
                from lm_eval.api.instance import Instance
                lm = hflm(m, batch=1, prefix_token_id=start[0])   # the start our loglikelihood reads after
                roll = lambda t: lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (t,), 0)], disable_tqdm=True)[0]
                roll(tok.decode(wctx))
                run = lambda: roll(text)
            res["text_tokens"] = len(ids)
        else:   # generate
            prompt = tok.decode(ctx)
            if method == "generate":
                m.generate(tok.decode(wctx), max_new_tokens=8, progress=False)
                run = lambda: m.generate(prompt, max_new_tokens=8, progress=False).prediction
            else:
                ids = torch.tensor([m.backend.prompt_ids(prompt)])
                gen = lambda x: tok.decode(model.generate(input_ids=x, max_new_tokens=8, do_sample=False,
                                                          pad_token_id=tok.eos_token_id)[0, x.shape[1]:],
                                           skip_special_tokens=True)
                gen(ids[:, :64])
                run = lambda: gen(ids)
    reps = 3 if sweep == "jobs" and n <= 10000 or sweep == "prompts" and n <= 1024 else 1   # a short run: min of 3
    with PeakRSS() as mem:
        for _ in range(reps):
            t = time.perf_counter(); out = run(); res["seconds"] = min(res.get("seconds", 1e9), time.perf_counter() - t)
    res["peak_growth_mb"], res["runs"] = mem.growth, reps
    if sweep == "jobs":   # what the returned responses themselves hold (their objects' sizes, added up)
        res["responses_mb"] = deep_size(out) / 1e6
        res["beyond_responses_mb"] = res["peak_growth_mb"] - res["responses_mb"]
        res["queries_per_second"] = n / res["seconds"]
    else:
        res["result"] = out if isinstance(out, (float, str)) else [float(x) for x in out] if out is not None else None
        res["tokens_per_second"] = n / res["seconds"]
    return res


def run_one(spec: dict, timeout: float) -> dict | None:
    "`measure(spec)` in a fresh process."
    try:
        p = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"over {timeout:.0f} s"}
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        return {**spec, "error": (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1][:300]}
    return json.loads(lines[-1])


def fits(sweep: str, method: str, n: int) -> bool:
    "Whether a peer's run of this size fits in the machine's memory (lm-eval's grows with the job, or with the square of the prompt)."
    if method == "lm-eval": return n <= LM_EVAL_MAX["lm-eval" if sweep == "jobs" else "lm-eval prompts"]
    if method == "lm-eval rolling": return n <= LM_EVAL_MAX["lm-eval rolling"]
    if method.startswith("generate"): return n <= GENERATE_MAX
    return True


def table(report: dict):
    "Print each sweep: a row per size, a column group per method, with the ratio that the issue's targets read."
    rows = report["results"]
    for sweep in ("jobs", "prompts"):
        rs = [r for r in rows if r["sweep"] == sweep]
        if not rs: continue
        print(f"\n{'Job size' if sweep == 'jobs' else 'Prompt length'} (seconds, peak growth MB"
              f"{', queries/s' if sweep == 'jobs' else ''})")
        methods = list(dict.fromkeys(r["method"] for r in rs))
        sizes = sorted({r["size"] for r in rs})
        get = {(r["size"], r["method"]): r for r in rs}
        print(f"{'size':>8}  " + "  ".join(f"{m:>24}" for m in methods))
        for n in sizes:
            cells = []
            for meth in methods:
                r = get.get((n, meth))
                if r is None: cells.append(f"{'—':>24}")
                elif "error" in r: cells.append(f"{r['error'][:24]:>24}")
                elif sweep == "jobs": cells.append(f"{r['seconds']:>7.1f}s {r['peak_growth_mb']:>6.0f}MB {r['queries_per_second']:>5.0f}q/s")
                else: cells.append(f"{r['seconds']:>10.2f}s {r['peak_growth_mb']:>9.0f}MB")
            print(f"{n:>8}  " + "  ".join(cells))
    for k, v in report.get("ratios", {}).items(): print(f"{k}: {v}")


def ratios(report: dict) -> dict:
    "The figures the targets are read from: speed and memory against the limit (prompts), rate against the smallest job."
    get = {(r["sweep"], r["size"], r["method"]): r for r in report["results"] if "error" not in r}
    out = {}
    for ours, lim in (("score", "limit"), ("score shared", "limit shared"), ("loglikelihood", "loglikelihood limit"),
                      ("generate", "generate hf")):
        for (s, n, meth), r in sorted(get.items(), key=lambda kv: kv[0][1]):
            if s == "prompts" and meth == ours and ("prompts", n, lim) in get:
                l = get[("prompts", n, lim)]
                out[f"{ours} / {lim} at {n}"] = {"speed": round(l["seconds"] / r["seconds"], 3),
                                                  "memory": round(r["peak_growth_mb"] / max(l["peak_growth_mb"], 1.0), 3)}
    jobs = sorted({n for s, n, _ in get if s == "jobs"})
    for meth in JOB_METHODS:
        have = [n for n in jobs if ("jobs", n, meth) in get]
        if len(have) > 1:
            a, b = get[("jobs", have[0], meth)], get[("jobs", have[-1], meth)]
            out[f"{meth}: rate at {have[-1]} / at {have[0]}"] = round(b["queries_per_second"] / a["queries_per_second"], 3)
            out[f"{meth}: growth beyond responses at {have[-1]} (MB)"] = round(b["beyond_responses_mb"], 1)
    for n in jobs:
        if ("jobs", n, "score") in get and ("jobs", n, "run cache") in get:
            out[f"run cache / score seconds at {n}"] = round(get[("jobs", n, "run cache")]["seconds"] / get[("jobs", n, "score")]["seconds"], 3)
    return out


def plot(report: dict, path: Path):
    "Two log-log panels: queries per second against job size, seconds against prompt length."
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, sweep, y, ylabel in ((a, "jobs", "queries_per_second", "queries per second"),
                                 (b, "prompts", "seconds", "seconds")):
        rs = [r for r in report["results"] if r["sweep"] == sweep and "error" not in r]
        for meth in dict.fromkeys(r["method"] for r in rs):
            pts = sorted((r["size"], r[y]) for r in rs if r["method"] == meth)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-" if "limit" not in meth and "hf" not in meth else "s--",
                    label=meth)
        ax.set_xscale("log"); ax.set_yscale("log"); ax.set_ylabel(ylabel); ax.grid(True, which="both", alpha=0.3)
        if rs: ax.legend(fontsize=8)
    a.set_xlabel("queries in the job"); a.set_title("Job size (tiny model: the library's own cost)")
    b.set_xlabel("prompt (or text) tokens"); b.set_title("Prompt length (SmolLM2 widths, 4 layers)")
    fig.tight_layout(); fig.savefig(path, dpi=120); plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    p.add_argument("--sweep", default="jobs,prompts", help="jobs, prompts, or both")
    p.add_argument("--sizes", default=None, help="comma-separated sizes (default: the sweep's own)")
    p.add_argument("--methods", default=None, help="comma-separated methods (default: all)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds one measurement may take")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    p.add_argument("--merge", nargs="+", type=Path, help="JSON Lines of earlier measurements (this script's output) to report with")
    a = p.parse_args(argv)
    if a.one:
        print(json.dumps(measure(json.loads(a.one)))); return
    report = {"results": [], "threads": 2}
    for f in a.merge or []:   # measurements of an earlier invocation, one JSON object a line
        report["results"] += [json.loads(l) for l in f.read_text().splitlines() if l.startswith('{"sweep"')]
    for sweep in [s for s in a.sweep.split(",") if s in ("jobs", "prompts")]:   # none: only report what --merge gives
        sizes = ([int(x) for x in a.sizes.split(",")] if a.sizes else
                 ([500, 2000] if sweep == "jobs" else [256, 1024]) if a.quick else
                 JOB_SIZES if sweep == "jobs" else PROMPT_SIZES)
        methods = a.methods.split(",") if a.methods else JOB_METHODS if sweep == "jobs" else PROMPT_METHODS
        for n in sizes:
            for meth in methods:
                if meth not in (JOB_METHODS if sweep == "jobs" else PROMPT_METHODS) or not fits(sweep, meth, n): continue
                r = run_one({"sweep": sweep, "size": n, "method": meth}, a.timeout)
                report["results"].append(r)
                print(json.dumps(r), flush=True)
    last = {(r["sweep"], r["size"], r["method"]): r for r in report["results"]}   # a size measured again: its last run
    report["results"] = sorted(last.values(), key=lambda r: (r["sweep"], r["size"]))
    report["ratios"] = ratios(report)
    table(report)
    a.out.mkdir(parents=True, exist_ok=True)
    name = "scale_bench_quick" if a.quick else "scale_bench"
    (a.out / f"{name}.json").write_text(json.dumps(report, indent=2))
    plot(report, a.out / f"{name}.png")
    print(f"\nwrote {a.out / (name + '.json')} and {a.out / (name + '.png')}")
    return report


if __name__ == "__main__":
    main()
