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
