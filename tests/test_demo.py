"""The main job: the demo loads the bundled model offline and ranks the answer."""
import os
import subprocess
import sys

import pytest


@pytest.mark.slow   # a new process loads the bundled model; the demo's code runs quickly below on a stand-in
def test_demo_ranks_mars_first():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "alfred_fm", "demo"], capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    ranking = [l.split()[0] for l in lines if "p=" in l and "logp=" in l]
    assert sorted(ranking) == ["Jupiter", "Mars", "Saturn", "Venus"]
    assert ranking[0] == "Mars" and "prediction: Mars" in out.stdout
    assert "greedy completion" in out.stdout


def test_demo_and_suite_load_without_remote_code(smol, t5, llama, minilm, monkeypatch, tmp_path):
    import alfred_fm.model
    from alfred_fm import HuggingFaceModel
    from alfred_fm.demo import main
    from alfred_fm.fixtures import tiny_llama
    assert [m.trust_remote_code for m in (smol, t5, llama, minilm)] == [False] * 4
    seen, init = [], HuggingFaceModel.__init__
    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("trust_remote_code", "default (True)")); init(self, *args, **kwargs)
    monkeypatch.setattr(HuggingFaceModel, "__init__", spy)
    monkeypatch.setattr(alfred_fm.model, "bundled_model", lambda: tiny_llama(tmp_path / "bundled"))  # fast stand-in
    main(["demo"])                                                     # the bundled model
    main(["demo", "--model", str(tiny_llama(tmp_path / "other"))])    # a model of the user's
    main(["demo", "--model", str(tiny_llama(tmp_path / "other")), "--trust-remote-code"])
    assert seen == [False, False, True]


def test_remote_code_is_blocked_in_the_suite():
    import transformers.dynamic_module_utils as d
    import pytest
    with pytest.raises(RuntimeError, match="the tests forbid it"):
        d.get_class_from_dynamic_module("x.Y", "some/repo")
