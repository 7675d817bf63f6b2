"""Cases of nbs/01_responses.ipynb too many for the notebook's examples."""
import pytest

from alfred_fm.responses import softmax


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), "2", True])
def test_softmax_refuses_a_temperature_that_is_not_positive_and_finite(bad):
    with pytest.raises(ValueError, match="temperature must be a positive finite number"):
        softmax({"a": 0.0}, temperature=bad)


# ---- JSON: strict, unambiguous, old files still read (issue 11, items 4 and 5) ----------------------------------
import json
import math

import torch

from alfred_fm.responses import CompletionResponse, RankedResponse, response_from_json, response_to_json


def strict_loads(text):
    def refuse(name): raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_are_written_as_strict_json_and_read_back():
    r = CompletionResponse(" x", float("-inf"), torch.tensor([1.0, math.nan, math.inf]))
    line = response_to_json(r)
    strict_loads(line)                                     # no bare NaN or Infinity
    back = response_from_json(line)
    assert back.score == -math.inf and back.embedding.dtype == torch.float32
    assert math.isnan(back.embedding[1]) and back.embedding[2] == math.inf
    nan = response_from_json(response_to_json([CompletionResponse(" y", math.nan)]))[0]
    assert math.isnan(nan.score)


@pytest.mark.parametrize("names", [["__tensor__", " no"], ["__tensor__", "dtype"], ["__float__"], ["__dict__", "x"]])
def test_candidates_named_like_a_tag_round_trip(names):
    r = RankedResponse.from_logits({c: -float(i) for i, c in enumerate(names)}, embeddings=torch.ones(2),
                                   token_logprobs={c: [(c, -1.0)] for c in names})
    assert response_from_json(response_to_json(r)) == r


def test_old_lines_with_a_candidate_named_tensor_still_read():
    old = ('{"type": "RankedResponse", "prediction": "__tensor__", "scores": {"__tensor__": 0.75, " no": 0.25}, '
           '"logits": {"__tensor__": -0.1, " no": -1.2}, "embeddings": {"__tensor__": [1.0], "dtype": "float32"}, '
           '"token_logprobs": null, "adjusted": null}')
    r = response_from_json(old)
    assert r.scores == {"__tensor__": 0.75, " no": 0.25} and torch.equal(r.embeddings, torch.tensor([1.0]))


# ---- to_dataframe (issue 13) ------------------------------------------------------------------------------------

def test_to_dataframe_of_a_real_mixed_run(llama):
    "One row per query of a mixed run, in order, with the prompt, the prediction, a completion's score and p / log p."
    from alfred_fm import to_dataframe
    queries = [("The capital of France is", [" Paris", " London"]), "Hi", ("Is the sky blue? Answer:", [" yes", " no"])]
    out = llama.run(queries, max_new_tokens=3, progress=False)
    df = to_dataframe(out, queries=queries)
    assert list(df.index) == [0, 1, 2] and df.index.name == "query"
    assert list(df.columns) == ["prompt", "prediction", "score", "p[ Paris]", "p[ London]", "p[ yes]", "p[ no]",
                                "logp[ Paris]", "logp[ London]", "logp[ yes]", "logp[ no]"]
    assert list(df["prompt"]) == ["The capital of France is", "Hi", "Is the sky blue? Answer:"]
    assert list(df["prediction"]) == [r.prediction for r in out]
    for i in (0, 2):
        for c in queries[i][1]:
            assert df.loc[i, f"p[{c}]"] == out[i].scores[c] and df.loc[i, f"logp[{c}]"] == out[i].logits[c]
    assert df.loc[1, "score"] == out[1].score and math.isnan(df.loc[0, "score"]) and math.isnan(df.loc[1, "p[ Paris]"])


def test_to_dataframe_of_several_completions_per_prompt(llama):
    from alfred_fm import to_dataframe
    out = llama.generate(["Hi", "The capital of France is"], max_new_tokens=3, num_beams=2, num_return_sequences=2,
                         progress=False)
    df = to_dataframe(out, queries=["Hi", "The capital of France is"])
    assert list(df.index) == [0, 0, 1, 1] and list(df["prompt"]) == ["Hi", "Hi"] + ["The capital of France is"] * 2
    assert list(df["score"]) == [r.score for rs in out for r in rs]


def test_to_dataframe_without_pandas_says_how_to_install_it(monkeypatch):
    import sys
    from alfred_fm import to_dataframe
    monkeypatch.setitem(sys.modules, "pandas", None)   # as on a machine without pandas
    with pytest.raises(ImportError, match="pip install pandas"):
        to_dataframe([RankedResponse.from_logits({"a": 0.0})])


def test_to_dataframe_refuses_what_is_not_a_response():
    from alfred_fm import to_dataframe
    with pytest.raises(TypeError, match="cannot put a dict in a table of responses"):
        to_dataframe([{"prediction": "a"}])
