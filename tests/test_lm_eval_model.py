"""alfred_fm as an lm-evaluation-harness model: `simple_evaluate` on small local tasks (a multiple-choice task and a
rolling perplexity task, YAML with local JSON data, no downloads), with lm-eval's HFLM at its own defaults and with
"alfred_fm" on the same loaded model, plain and with apply_chat_template=True, on SmolLM2 (a tokenizer that defines a
BOS it never adds) and on a tiny Llama whose tokenizer adds a BOS: every sample's log-likelihood within 1e-3, the
metrics equal."""
import json, subprocess, sys, textwrap
import pytest

lm_eval = pytest.importorskip("lm_eval")

QUESTIONS = [("Which planet is known as the Red Planet?", ["Mars", "Venus", "Jupiter", "Saturn"], 0),
             ("What colour is grass?", ["blue", "green", "red"], 1),
             ("What is the capital of France?", ["Berlin", "Madrid", "Paris", "Rome"], 2),
             ("How many legs does a spider have?", ["six", "eight", "ten"], 1),
             ("Which animal says moo?", ["a cow", "a cat", "a dog"], 0),
             ("What do bees make?", ["milk", "honey", "silk"], 1)]
TEXTS = ["The quick brown fox jumps over the lazy dog. It was a bright cold day in April, and the clocks were striking "
         "thirteen.", "Call me Ishmael.", "Paris is the capital and largest city of France, with an estimated population "
         "of two million residents."]
GENERATE = [{"question": "Name a primary colour.", "stop": "."}, {"question": "Count: one, two,", "stop": "\n"}]


def write_tasks(folder):
    "Three lm-eval tasks in `folder`: multiple choice, rolling perplexity, and a short generation."
    (folder / "mc.json").write_text(json.dumps([{"question": q, "choices": c, "answer": a} for q, c, a in QUESTIONS]))
    (folder / "ppl.json").write_text(json.dumps([{"text": t} for t in TEXTS]))
    (folder / "gen.json").write_text(json.dumps(GENERATE))
    head = lambda name, data: textwrap.dedent(f"""\
        task: {name}
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {folder / data}
        test_split: test
        """)
    (folder / "mc.yaml").write_text(head("alfred_mc", "mc.json") + textwrap.dedent("""\
        output_type: multiple_choice
        doc_to_text: "Question: {{question}}\\nAnswer:"
        doc_to_choice: "{{choices}}"
        doc_to_target: "{{answer}}"
        metric_list:
          - metric: acc
          - metric: acc_norm
        """))
    (folder / "ppl.yaml").write_text(head("alfred_ppl", "ppl.json") + textwrap.dedent("""\
        output_type: loglikelihood_rolling
        doc_to_text: ""
        doc_to_target: "{{text}}"
        metric_list:
          - metric: word_perplexity
          - metric: byte_perplexity
          - metric: bits_per_byte
        """))
    (folder / "gen.yaml").write_text(head("alfred_gen", "gen.json") + textwrap.dedent("""\
        output_type: generate_until
        doc_to_text: "{{question}}"
        doc_to_target: ""
        generation_kwargs:
          until: ["{{stop}}"]
          max_gen_toks: 8
          do_sample: false
        metric_list:
          - metric: exact_match
        """))
    return folder


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    from lm_eval.tasks import TaskManager
    return TaskManager(include_path=str(write_tasks(tmp_path_factory.mktemp("tasks"))))


def evaluate(lm, tasks, names, **kwargs):
    return lm_eval.simple_evaluate(model=lm, tasks=names, task_manager=tasks, log_samples=True, bootstrap_iters=0,
                                   verbosity="ERROR", **kwargs)


def lls(result, task):
    "Each sample's log-likelihoods, in doc order: one per choice, or one per text."
    out = []
    for s in sorted(result["samples"][task], key=lambda s: s["doc_id"]):
        for r in s["resps"]: out.append(r[0][0] if isinstance(r[0], (list, tuple)) else r[0])
    return out


def hflm(model):
    "lm-eval's own HF model on the same loaded model, at its defaults (its own start token, `prefix_token_id`)."
    from lm_eval.models.huggingface import HFLM
    return HFLM(pretrained=model.model, tokenizer=model.tokenizer, batch_size=8)


@pytest.fixture
def bos_llama(chat_llama):
    "A tiny Llama whose tokenizer adds a BOS, with a chat template that writes it as text (conftest's `chat_llama`)."
    return chat_llama


def test_hflms_start_token_is_alfred_fms_only_where_the_tokenizer_adds_its_bos(smol, bos_llama):
    "What makes the default matter: SmolLM2 defines a BOS that it never adds, so HFLM's start is not HuggingFaceModel's."
    assert hflm(bos_llama).prefix_token_id == bos_llama.backend.start[0] == bos_llama.tokenizer.bos_token_id
    assert hflm(smol).prefix_token_id == smol.tokenizer.bos_token_id != smol.backend.start[0] == smol.tokenizer.eos_token_id


def check_same(theirs, ours, names):
    for name in names:
        a, b = lls(theirs, name), lls(ours, name)
        assert len(a) == len(b) > 0
        assert max(abs(x - y) for x, y in zip(a, b)) < 1e-3, name
        for metric, v in theirs["results"][name].items():
            if metric.endswith(",none") and isinstance(v, float):
                # accuracies exactly; perplexities (exp of summed log-likelihoods, which differ by < 1e-3) to a relative 1e-3
                assert ours["results"][name][metric] == pytest.approx(v, rel=1e-3, abs=1e-6), (name, metric)


@pytest.mark.parametrize("name", ["smol", "bos_llama"])
def test_simple_evaluate_equals_hflm(name, request, tasks):
    import alfred_fm.lm_eval  # noqa: F401 -- registers "alfred_fm"
    model = request.getfixturevalue(name)
    names = ["alfred_mc", "alfred_ppl", "alfred_gen"]
    theirs = evaluate(hflm(model), tasks, names)
    ours = evaluate("alfred_fm", tasks, names, model_args={"pretrained": model})
    check_same(theirs, ours, names[:2])
    gen = lambda r: [s["filtered_resps"][0] for s in sorted(r["samples"]["alfred_gen"], key=lambda s: s["doc_id"])]
    assert gen(ours) == gen(theirs) and all(gen(ours))


@pytest.mark.parametrize("name", [pytest.param("smol", marks=pytest.mark.slow), "bos_llama"])
def test_simple_evaluate_equals_hflm_with_chat_template(name, request, tasks):
    from alfred_fm.lm_eval import AlfredLM
    model = request.getfixturevalue(name)
    names = ["alfred_mc", "alfred_ppl", "alfred_gen"]
    theirs = evaluate(hflm(model), tasks, names, apply_chat_template=True, system_instruction="Answer briefly.")
    ours = evaluate(AlfredLM(model), tasks, names, apply_chat_template=True, system_instruction="Answer briefly.")
    check_same(theirs, ours, names[:2])
    args = sorted(ours["samples"]["alfred_mc"], key=lambda s: s["doc_id"])[0]["arguments"]
    ctx = args[0][0] if isinstance(args, list) else args["gen_args_0"]["arg_0"]
    assert ctx.startswith({"smol": "<|im_start|>system\nAnswer briefly.", "bos_llama": "<s><|system|>\nAnswer briefly."}[name])
    gen = lambda r: [s["filtered_resps"][0] for s in sorted(r["samples"]["alfred_gen"], key=lambda s: s["doc_id"])]
    assert gen(ours) == gen(theirs)


def test_loglikelihood_rolling_equals_hflm_at_its_defaults(bos_llama):
    """Whole texts in windows of 16 tokens (several per text), from HFLM's own start token and tokenisation, for a
    tokenizer that adds its BOS (SmolLM2's, which does not: tests/test_likelihood.py, with `loglikelihood`'s)."""
    from lm_eval.api.instance import Instance
    from alfred_fm.lm_eval import AlfredLM
    from test_likelihood import TEXTS
    model = bos_llama
    reqs = [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(TEXTS)]
    from lm_eval.models.huggingface import HFLM
    theirs = HFLM(pretrained=model.model, tokenizer=model.tokenizer, batch_size=4, max_length=16).loglikelihood_rolling(reqs, disable_tqdm=True)
    ours = AlfredLM(model, max_length=16).loglikelihood_rolling(reqs, disable_tqdm=True)
    for t, a, b in zip(TEXTS, ours, theirs): assert a == pytest.approx(b, abs=1e-3), t


def test_model_args_string_loads_a_folder(tmp_path, tasks):
    "model_args as lm-eval's command line gives them: a path, dtype, device, batch_size and max_length."
    import alfred_fm.lm_eval  # noqa: F401
    from alfred_fm.fixtures import tiny_llama
    path = tiny_llama(tmp_path / "llama", add_bos=True)
    r = lm_eval.simple_evaluate(model="alfred_fm", model_args=f"pretrained={path},dtype=float32,max_length=16",
                                tasks=["alfred_ppl"], task_manager=tasks, device="cpu", batch_size=4, bootstrap_iters=0,
                                verbosity="ERROR")
    assert r["results"]["alfred_ppl"]["word_perplexity,none"] > 1


@pytest.mark.slow   # a new process that imports torch, transformers and lm-eval
def test_command_line(tmp_path, tasks):
    "`alfred-fm lm-eval` is lm-eval's command line with the model registered and chosen."
    from alfred_fm.fixtures import tiny_llama
    folder = write_tasks(tmp_path)
    path = tiny_llama(tmp_path / "llama", add_bos=True)
    out = subprocess.run([sys.executable, "-m", "alfred_fm", "lm-eval", "--tasks", "alfred_ppl", "--include_path",
                          str(folder), "--model_args", f"pretrained={path},max_length=16", "--device", "cpu"],
                         capture_output=True, text=True, timeout=600, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "alfred_fm" in out.stdout and "word_perplexity" in out.stdout, out.stdout[-3000:]


@pytest.mark.parametrize("name", ["smol", "bos_llama"])
def test_loglikelihood_and_is_greedy_equal_hflms(name, request):
    "Each (context, continuation): the same log-likelihood and the same is_greedy as HFLM, greedy continuations and empty contexts included."
    from lm_eval.api.instance import Instance
    from alfred_fm.lm_eval import AlfredLM
    model = request.getfixturevalue(name)
    contexts = ["The capital of France is", "Question: What colour is grass?\nAnswer:", "1, 2, 3,"]
    greedy = [model.generate(c, max_new_tokens=3, progress=False).prediction for c in contexts]
    pairs = [(c, g) for c, g in zip(contexts, greedy)] + [(c, x) for c in contexts for x in (" blue", " 42 and more")]
    pairs += [("", "Hello there"), ("", " and so on")]
    reqs = [Instance("loglikelihood", {}, p, i) for i, p in enumerate(pairs)]
    theirs = hflm(model).loglikelihood(reqs, disable_tqdm=True)
    ours = AlfredLM(model).loglikelihood(reqs, disable_tqdm=True)
    assert [g for _, g in ours] == [g for _, g in theirs]
    if name == "smol": assert sum(g for _, g in ours) >= len(contexts)   # (the tiny Llama's greedy text retokenises otherwise)
    for p, (a, _), (b, _) in zip(pairs, ours, theirs): assert a == pytest.approx(b, abs=1e-3), p


def test_loglikelihood_reads_a_long_context_in_its_window(smol):
    "With max_length=16, a long context loses its first tokens to fit the window with its continuation; the model keeps its own length."
    from lm_eval.api.instance import Instance
    from alfred_fm.fixtures import causal_reference
    from alfred_fm.lm_eval import AlfredLM
    ctx = "The quick brown fox jumps over the lazy dog. " * 4
    req = [Instance("loglikelihood", {}, (ctx, " again"), 0)]
    with pytest.warns(UserWarning, match="did not fit in the model's 16 tokens"):
        (cut, _), = AlfredLM(smol, max_length=16).loglikelihood(req, disable_tqdm=True)
    (whole, _), = AlfredLM(smol).loglikelihood(req, disable_tqdm=True)
    ids, (cont,) = smol.backend.query_ids(ctx, [" again"])
    expected = causal_reference(smol.model, ids[-(16 - len(cont)):], cont).double().sum().item()   # SmolLM2 adds no BOS
    assert cut == pytest.approx(expected, abs=1e-4) and abs(cut - whole) > 1e-3
    assert smol.max_length == smol.backend.max_length == 8192
