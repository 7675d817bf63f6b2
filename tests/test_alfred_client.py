"""Alfred's own code on alfred_fm (issue 12): after `alfred_fm.alfred.install()`, Alfred's `Client`, templates,
calibration, voters and label models run unchanged on alfred_fm's numbers, and Alfred's own unit tests pass.

Alfred is not on PyPI: these tests use its source at ../shared/alfred (commit 1e9e953) and its import dependencies
(grpcio, paramiko, protobuf<5, pyarrow, scipy, pandas: the `dev` extra). Where the source is missing (a user's
machine) they skip with the reason; under CI=true they fail."""
import importlib.util
import os
import subprocess
import sys
import unittest
from pathlib import Path

import numpy as np
import pytest
import torch

from alfred_fm import HuggingFaceModel
from alfred_fm.fixtures import tiny_llama, tiny_t5
from alfred_fm.loading import bundled_model
from needs import need
from reference import TOL, assert_same

ROOT = Path(__file__).resolve().parent.parent
ALFRED = ROOT.parent / "shared" / "alfred"


@pytest.fixture(scope="module")
def alfred():
    "Alfred's package, imported from its source, with alfred_fm installed in place of its HuggingFaceModel."
    need(ALFRED.is_dir(), f"Alfred's source is not at {ALFRED}")
    for dep in ("grpc", "paramiko", "pyarrow", "scipy", "pandas", "google.protobuf"):
        need(importlib.util.find_spec(dep.split(".")[0]) is not None,
             f"Alfred's dependency {dep} is missing: pip install -e '.[dev]'")
    sys.path.insert(0, str(ALFRED))
    import alfred_fm.alfred as integration
    integration.install()
    import alfred
    assert Path(alfred.__file__).is_relative_to(ALFRED), f"another Alfred was imported: {alfred.__file__}"
    yield alfred
    integration.uninstall()
    sys.path.remove(str(ALFRED))


def alfred_test_module(rel: str):
    "One of Alfred's own test files, imported from its path."
    path = ALFRED / "test" / rel
    spec = importlib.util.spec_from_file_location(f"alfred_own_{path.stem}", path)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def run_unittests(*cases) -> unittest.TestResult:
    "Run unittest cases (classes or modules); fail with Alfred's own messages unless every test passed."
    loader, suite = unittest.TestLoader(), unittest.TestSuite()
    for c in cases: suite.addTests(loader.loadTestsFromModule(c) if hasattr(c, "__file__") else loader.loadTestsFromTestCase(c))
    result = unittest.TestResult(); suite.run(result)
    problems = [f"{t}: {msg}" for t, msg in result.failures + result.errors]
    assert result.testsRun > 0 and not problems and not result.skipped, "\n".join(problems) or result.skipped
    return result


def test_nothing_of_alfred_is_imported_without_install():
    "alfred_fm, its integration module included, imports no part of Alfred until install() (or to_alfred) is called."
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ALFRED), os.environ.get("PYTHONPATH", "")])}
    code = ("import sys, alfred_fm, alfred_fm.alfred, alfred_fm.model\n"
            "m = alfred_fm.alfred.AlfredHuggingFaceModel\n"
            "print(sorted(n for n in sys.modules if n == 'alfred' or n.startswith('alfred.')))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


# ---- Alfred's own unit tests -----------------------------------------------------------------------------------

ALFRED_TESTS = ["unit_test/test_query.py", "unit_test/test_response.py", "unit_test/test_template.py",
                "unit_test/test_voter.py", "unit_test/test_client.py", "unit_test/test_batch.py",
                "integration/test_dataset_template.py"]
# Not run: test_data.py downloads a CSV from GitHub (no network here, and no model involved); test_grpc.py serves
# Alfred's dummy model on a fixed port (no model of ours involved). test_hf_model_cache.py runs below, on a local model.


@pytest.mark.parametrize("rel", ALFRED_TESTS)
def test_alfreds_own_unit_tests_pass_with_alfred_fm_installed(alfred, rel):
    run_unittests(alfred_test_module(rel))


def test_alfreds_own_model_test_builds_alfred_fm(alfred, tmp_path, monkeypatch):
    """Alfred's test_hf_model_cache.py, which builds `alfred.fm.huggingface.HuggingFaceModel` and checks `local_path`,
    with only its hub id (google/t5-efficient-tiny, not downloadable here) swapped for a local T5 folder."""
    folder = str(tiny_t5(tmp_path / "t5"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRANSFORMERS_CACHE", "")   # the test sets it; monkeypatch puts the old value back after
    for later in ("HUGGINGFACE_HUB_CACHE", "HF_HOME"): monkeypatch.delenv(later, raising=False)   # would win in Alfred too
    mod = alfred_test_module("unit_test/test_hf_model_cache.py")
    from alfred_fm.alfred import AlfredHuggingFaceModel
    assert mod.HuggingFaceModel is AlfredHuggingFaceModel
    built = []
    class Local(mod.TestHuggingFaceModelCache):
        def setUp(self):
            super().setUp(); self.test_model_string = folder
            self.addCleanup(lambda: built.append(True))
    assert run_unittests(Local).testsRun == 2 == len(built)


def test_install_and_uninstall(alfred):
    import alfred.fm.huggingface as hf
    from alfred_fm.alfred import AlfredHuggingFaceModel, install, uninstall
    assert hf.HuggingFaceModel is AlfredHuggingFaceModel
    uninstall()
    try:
        assert hf.HuggingFaceModel.__module__ == "alfred.fm.huggingface"   # Alfred's own class, back
        assert install() is AlfredHuggingFaceModel and install() is AlfredHuggingFaceModel   # twice is once
    finally: install()
    uninstall()
    assert hf.HuggingFaceModel.__module__ == "alfred.fm.huggingface"
    install()


# ---- Alfred's Client on alfred_fm ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def llama_client(alfred, tmp_path_factory):
    "Alfred's Client, built by Alfred's own code (`model_type='huggingface'`), on a tiny Llama folder."
    from alfred.client import Client
    folder = str(tiny_llama(tmp_path_factory.mktemp("alfred_llama"), add_bos=True))
    return Client(model_type="huggingface", model=folder, trust_remote_code=False)


def test_client_builds_alfred_fm(llama_client):
    from alfred_fm.alfred import AlfredHuggingFaceModel
    assert type(llama_client.model) is AlfredHuggingFaceModel and llama_client.model.trust_remote_code is False


def test_client_answers_in_alfreds_classes_with_alfred_fms_numbers(alfred, llama_client):
    from alfred.fm.query import CompletionQuery, RankedQuery
    from alfred.fm.response import CompletionResponse, RankedResponse
    m = llama_client.model
    ranked = [RankedQuery("Is the sky blue? Answer: ", ["yes", "no"]), RankedQuery("2 + 2 =", [" 4", " 5", " four"])]
    ours = HuggingFaceModel.score(m, [(q.prompt, q.candidates) for q in ranked], progress=False)   # alfred_fm's own path
    got = llama_client.run(ranked, no_tqdm=True)
    assert [type(r) for r in got] == [RankedResponse, RankedResponse]
    for g, o in zip(got, ours):
        assert_same((g.prediction, g.scores, g.logits, g.embeddings), (o.prediction, o.scores, o.logits, None))
    one = llama_client.score(ranked[0], no_tqdm=True)   # what Client.calibrate calls
    assert type(one) is RankedResponse and one.logits == pytest.approx(ours[0].logits, abs=1e-4)   # alone, not batched
    detail = llama_client.run(ranked[0], token_logprobs=True, no_tqdm=True)   # alfred_fm's extra field, as a key
    assert sum(lp for _, lp in detail["token_logprobs"]["yes"]) == pytest.approx(detail.logits["yes"], abs=1e-5)

    text = llama_client("Once upon a time", max_new_tokens=4, no_tqdm=True)   # Client.__call__ with a prompt
    want = HuggingFaceModel.generate(m, "Once upon a time", max_new_tokens=4, progress=False)
    assert type(text) is CompletionResponse; assert_same((text.prediction, text.score), (want.prediction, want.score))
    gen = llama_client.generate([CompletionQuery("Once"), CompletionQuery("Twice")], max_new_tokens=3, no_tqdm=True)
    assert [type(r) for r in gen] == [CompletionResponse] * 2

    emb = llama_client.encode(["Once upon a time", "Hi"], reduction="mean")
    assert_same(emb, m.encode(["Once upon a time", "Hi"], progress=False))
    assert_same(llama_client.encode("Hi"), emb[1])   # alone vs. padded in a batch


def test_alfreds_forward_and_batch_methods(alfred, llama_client):
    from alfred.fm.query import RankedQuery
    from alfred.fm.response import CompletionResponse, RankedResponse
    m = llama_client.model
    q = [RankedQuery("Q: ", ["a", "b"])]
    for policy in ("dynamic", "static"):
        r = m.forward(q, batch_policy=policy, batch_size=8, mode="score", pretokenize=True, no_tqdm=True)
        assert type(r[0]) is RankedResponse
    assert type(m._generate_batch(["Once"], max_new_tokens=2)[0]) is CompletionResponse
    rows = m._score_batch([("Q: ", " a")])
    assert set(rows[0]) == {"logit", "candidate", "hidden_state"}


# ---- a weak-supervision flow -----------------------------------------------------------------------------------

REVIEWS = [("A wonderful, moving film with brilliant acting.", 1), ("Dull, boring and far too long.", 2),
           ("I loved every minute of it.", 1), ("The worst movie I have seen this year.", 2),
           ("A delightful and charming story.", 1), ("Terrible script and awful acting.", 2),
           ("An excellent film, beautifully shot.", 1), ("A complete waste of time.", 2)]


def expected_calibration(model, template, candidates, null_tokens, strategy):
    "Client.calibrate's weights and biases, from Alfred's formula on alfred_fm's own probabilities of the null prompts."
    ps = [HuggingFaceModel.score(model, (template.apply({k: t for k in template.keywords}).prompt, candidates),
                                 progress=False).scores for t in null_tokens]
    ps = [np.array([p[c] for c in candidates]) for p in ps]
    if strategy == 1: return np.mean([np.linalg.inv(np.diag(p)) for p in ps], axis=0), np.zeros(len(candidates))
    return np.eye(len(candidates)), -np.mean(ps, axis=0)


def expected_votes(responses, label_map, calibration=None):
    "Alfred's Voter, by hand: the best candidate (by W @ logits + b when calibrated), mapped through the label map."
    out = []
    for r in responses:
        cands, logits = list(r.logits), np.array(list(r.logits.values()))
        best = cands[int(np.argmax(calibration[0] @ logits + calibration[1]))] if calibration else r.prediction
        out.append(label_map[best])
    return np.array(out, dtype=float)


@pytest.mark.slow   # loads the bundled SmolLM2 through Alfred's Client (about 25 s)
def test_weak_supervision_flow(alfred):
    """Templates over a small sentiment set -> Client.run -> Client.calibrate (both strategies) -> Voter -> Alfred's
    MajorityVote label model, all Alfred's code, unchanged, on alfred_fm's model."""
    from alfred.client import Client
    from alfred.client.client import NULL_INPUT_TOKENS
    from alfred.fm.response import RankedResponse
    from alfred.labeling import MajorityVote
    from alfred.template import StringTemplate
    from alfred.voter import Voter

    client = Client(model_type="huggingface", model=str(bundled_model()), trust_remote_code=False)
    model, data = client.model, [{"text": t} for t, _ in REVIEWS]
    templates = [  # (template, label map, calibration strategy)
        (StringTemplate("Review: [[text]]\nSentiment (positive or negative): ", answer_choices="positive ||| negative"),
         {"positive": 1, "negative": 2}, None),
        (StringTemplate("[[text]] All in all, the film was ", answer_choices="great ||| awful"),
         {"great": 1, "awful": 2}, 1),
        (StringTemplate("Review: [[text]]\nDid the reviewer like the movie? Answer: ", answer_choices="yes ||| no"),
         {"yes": 1, "no": 2}, 2),
    ]
    votes = []
    for template, label_map, strategy in templates:
        queries = template.apply_to_dataset(data)
        responses = client.run(queries, no_tqdm=True)
        ours = HuggingFaceModel.score(model, [(q.prompt, q.candidates) for q in queries], progress=False)
        assert all(type(r) is RankedResponse for r in responses)   # Alfred's Voter votes only on its own class
        assert_same([r.logits for r in responses], [o.logits for o in ours])
        assert [r.prediction for r in responses] == [o.prediction for o in ours]
        voter = Voter(label_map)
        if strategy:
            client.calibrate(template, voter=voter, strategy=strategy)
            want = expected_calibration(model, template, template.get_answer_choices_list(), NULL_INPUT_TOKENS, strategy)
            # two computations of the null prompts' probabilities: within the contract's image (1/p moves by 2·TOL·(1/p))
            np.testing.assert_allclose(voter._calibration[0], want[0], rtol=2 * TOL, atol=TOL)
            np.testing.assert_allclose(voter._calibration[1], want[1], rtol=2 * TOL, atol=TOL)
        v = voter.vote(responses)
        assert (v != 0).all(), f"a response abstained: {v}"
        np.testing.assert_array_equal(v, expected_votes(responses, label_map, voter._calibration))
        votes.append(v)

    votes = np.stack(votes, axis=1)
    labels = MajorityVote().label(votes)
    counts = np.stack([(votes == k).sum(axis=1) for k in (1, 2)], axis=1)
    np.testing.assert_array_equal(labels, 1 + counts.argmax(axis=1))   # the mode; a tie goes to the lower label
    gold = np.array([y for _, y in REVIEWS])
    accuracy = (labels == gold).mean()
    print(f"votes:\n{votes}\nlabels {labels}, gold {gold}, accuracy {accuracy:.3f}")
    assert accuracy >= 0.75, f"the label model's accuracy {accuracy} fell below the 7/8 it had when this was written"
