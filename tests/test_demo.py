"""The main job: the demo loads the bundled model offline and ranks the answer."""
import os
import subprocess
import sys


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
