#!/usr/bin/env python
"""lm-evaluation-harness tasks, side by side: its own HFLM and alfred_fm's model ("alfred_fm"), on the same loaded model.

    python benchmarks/lm_eval_bench.py            # the bundled SmolLM2-135M, min of 3 runs
    python benchmarks/lm_eval_bench.py --quick    # tiny random model, small tasks: a smoke test

One process, the model loaded once, both models run through `lm_eval.simple_evaluate` on the same local tasks
(written to a temporary folder as YAML with JSON data, so nothing is downloaded):

- mc:   a multiple-choice task in the shape of HellaSwag: 48 contexts of ~120 tokens, 4 endings of ~20 tokens each
- ppl:  a rolling perplexity task: 8 texts of ~600 tokens, read in windows of `--max-length` tokens

Each is timed (minimum of `--reps` runs) with HFLM at batch size 16 and with alfred_fm, and the per-sample
log-likelihoods of the two are compared. It prints a table with the speed ratio (HFLM time / alfred_fm time) and the
largest difference, and writes `lm_eval_bench.json` into `--out`.
"""
from __future__ import annotations
import argparse, json, os, random, sys, tempfile, textwrap, time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

WORDS = ("time person year way day thing man world life hand part child eye woman place work week case point "
         "government company number group problem fact say get make go know take see come think look want give use "
         "find tell ask seem feel try leave call good new first last long great little own other old right big high "
         "different small large next early young important few public bad same able river music science market "
         "election team match season vote policy court law film novel album artist study theory data model").split()


def sentence(rnd, n_words):
    return " ".join(rnd.choice(WORDS) for _ in range(n_words)).capitalize() + "."


def write_tasks(folder: Path, quick: bool) -> Path:
    "The two tasks, as YAML with local JSON data."
    rnd, k = random.Random(0), 4 if quick else 1
    mc = [{"ctx": " ".join(sentence(rnd, 15) for _ in range(6 // k)), "endings": [sentence(rnd, 14 // k) for _ in range(4)],
           "label": rnd.randrange(4)} for _ in range(48 // k)]
    ppl = [{"text": " ".join(sentence(rnd, 20) for _ in range(24 // k))} for _ in range(8 // k)]
    (folder / "mc.json").write_text(json.dumps(mc)); (folder / "ppl.json").write_text(json.dumps(ppl))
    head = lambda name, data: f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {folder / data}\ntest_split: test\n"
    (folder / "mc.yaml").write_text(head("bench_mc", "mc.json") + textwrap.dedent("""\
        output_type: multiple_choice
        doc_to_text: "{{ctx}}"
        doc_to_choice: "{{endings}}"
        doc_to_target: "{{label}}"
        target_delimiter: " "
        metric_list:
          - metric: acc
          - metric: acc_norm
        """))
    (folder / "ppl.yaml").write_text(head("bench_ppl", "ppl.json") + textwrap.dedent("""\
        output_type: loglikelihood_rolling
        doc_to_text: ""
        doc_to_target: "{{text}}"
        metric_list:
          - metric: word_perplexity
          - metric: bits_per_byte
        """))
    return folder


def samples(result, task) -> list[float]:
    out = []
    for s in sorted(result["samples"][task], key=lambda s: s["doc_id"]):
        for r in s["resps"]: out.append(r[0][0] if isinstance(r[0], (list, tuple)) else r[0])
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny random model and small tasks (a smoke test)")
    p.add_argument("--reps", type=int, default=3, help="runs per method; the minimum is kept")
    p.add_argument("--max-length", type=int, default=256, help="window of the rolling perplexity task")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--out", default=str(Path(__file__).parent / "results"), help="folder for lm_eval_bench.json")
    args = p.parse_args(argv)
    import torch, lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from alfred_fm import HuggingFaceModel
    from alfred_fm.lm_eval import AlfredLM
    from transformers.utils import logging as hf_logging
    torch.set_num_threads(args.threads); hf_logging.set_verbosity_error()
    if args.quick:
        from alfred_fm.fixtures import tiny_llama
        model = HuggingFaceModel(str(tiny_llama(tempfile.mkdtemp())), trust_remote_code=False)   # no BOS, as SmolLM2
    else: model = HuggingFaceModel.bundled()
    tasks = TaskManager(include_path=str(write_tasks(Path(tempfile.mkdtemp()), args.quick)))
    # both at lm-eval's defaults: "alfred_fm" takes HFLM's start token and tokenisation (see the lm-eval chapter)
    makers = {"lm-eval HFLM b16": lambda: HFLM(pretrained=model.model, tokenizer=model.tokenizer, batch_size=16,
                                               max_length=args.max_length),
              "alfred_fm": lambda: AlfredLM(model, max_length=args.max_length)}
    report = {"model": repr(model), "threads": args.threads, "max_length": args.max_length, "tasks": {}}
    print(f"{model!r}, {args.threads} threads, min of {args.reps} runs\n")
    print(f"{'task':<10}{'method':<20}{'seconds':>9}{'ratio':>8}{'max |Δ ll|':>12}")
    for task in ("bench_mc", "bench_ppl"):
        times, results = {}, {}
        for name, make in makers.items():
            lm, best = make(), float("inf")
            for _ in range(args.reps):
                t = time.perf_counter()
                results[name] = lm_eval.simple_evaluate(model=lm, tasks=[task], task_manager=tasks, log_samples=True,
                                                        bootstrap_iters=0, verbosity="ERROR")
                best = min(best, time.perf_counter() - t)
            times[name] = best
        a, b = (samples(results[n], task) for n in makers)
        diff = max(abs(x - y) for x, y in zip(a, b))
        ratio = times["lm-eval HFLM b16"] / times["alfred_fm"]
        for name in makers:
            print(f"{task:<10}{name:<20}{times[name]:9.2f}{(ratio if name == 'alfred_fm' else 1.0):8.2f}"
                  f"{(diff if name == 'alfred_fm' else 0.0):12.2e}")
        report["tasks"][task] = {"seconds": times, "speedup_vs_hflm": ratio, "max_abs_ll_diff": diff, "samples": len(a),
                                 "metrics": {n: {k: v for k, v in r["results"][task].items() if isinstance(v, float)}
                                             for n, r in results.items()}}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "lm_eval_bench.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
