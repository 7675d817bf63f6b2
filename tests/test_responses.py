"""Cases of nbs/01_responses.ipynb too many for the notebook's examples."""
import pytest

from alfred_fm.responses import softmax


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan"), "2", True])
def test_softmax_refuses_a_temperature_that_is_not_positive_and_finite(bad):
    with pytest.raises(ValueError, match="temperature must be a positive finite number"):
        softmax({"a": 0.0}, temperature=bad)
