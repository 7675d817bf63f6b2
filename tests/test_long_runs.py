"""Long runs lose nothing: a job killed with SIGKILL resumes from its SQLite cache, recomputes nothing stored, and ends
with exactly the responses of an uninterrupted run; readers can read the cache while the job writes; a CUDA
out-of-memory error in the middle of a run changes nothing."""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from alfred_fm import HuggingFaceModel
from alfred_fm.fixtures import tiny_llama
from alfred_fm.responses import response_from_json
from alfred_fm.run import read_jsonl
from reference import assert_same
from long_run_queries import queries

HERE = Path(__file__).resolve().parent
N = 3000


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return str(tiny_llama(tmp_path_factory.mktemp("long_run_llama")))


def count(db) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as c:
            return c.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    except sqlite3.OperationalError:   # the job has not created the table yet
        return 0


@pytest.mark.slow   # a 3000-query job in another process, killed, resumed and run again whole
def test_killed_job_resumes_where_it_stopped(folder, tmp_path):
    db = tmp_path / "labels.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    job = subprocess.Popen([sys.executable, str(HERE / "long_run_job.py"), folder, str(db), str(N),
                            str(torch.get_num_threads())], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen, start = [], time.time()
    try:
        while time.time() - start < 300:
            n = count(db)
            if n:   # a concurrent reader: the rows already there read back as responses
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as c:
                    for (text,) in c.execute("SELECT response FROM responses LIMIT 3"): response_from_json(text)
            seen.append(n)
            if n >= 1000 or job.poll() is not None: break
            time.sleep(0.05)
        assert job.poll() is None, f"the job ended before it could be killed: {job.communicate()[1][-2000:]!r}"
        job.send_signal(signal.SIGKILL)
    finally:
        job.kill(); job.wait()
    assert job.returncode == -signal.SIGKILL
    stored = count(db)
    assert 1000 <= stored < N and stored % 100 == 0, stored   # whole chunks, never half of one
    assert seen == sorted(seen)

    m = HuggingFaceModel(folder, trust_remote_code=False)
    qs = queries(N)
    resumed = m.run(qs, cache=db, jsonl=tmp_path / "labels.jsonl", chunk_size=100, max_new_tokens=4, progress=False)
    assert m.last_run_stats == {"cached": stored, "computed": N - stored}   # nothing stored was recomputed
    whole = m.run(qs, cache=tmp_path / "fresh.sqlite", chunk_size=100, max_new_tokens=4, progress=False)
    assert m.last_run_stats == {"cached": 0, "computed": N}
    assert_same(resumed, whole)     # the killed process's answers and this one's: two computations, within the contract
    assert read_jsonl(tmp_path / "labels.jsonl") == resumed   # the stream holds exactly what run returned, in the caller's order
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == N


def test_out_of_memory_in_the_middle_of_a_run(folder, monkeypatch):
    """A CUDA OOM from the fifth forward pass on, for every batch of more than 4 rows, while scoring and while generating:
    the run splits those batches and goes on. Same predictions and completions; the numbers equal within float32
    rounding (a smaller batch adds floats in another order: measured up to 3e-6 here)."""
    m = HuggingFaceModel(folder, trust_remote_code=False)
    qs = queries(200)
    clean = m.run(qs, max_new_tokens=4, batch_size=16, progress=False)
    rows, forward = [], m.model.base_model.forward      # under every path: packed scoring, generation, encoding
    def flaky(*args, **kwargs):
        x = kwargs.get("input_ids")
        x = x if x is not None else kwargs.get("inputs_embeds")
        rows.append(x.shape[0])
        if len(rows) >= 5 and x.shape[0] > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
        return forward(*args, **kwargs)
    monkeypatch.setattr(m.model.base_model, "forward", flaky)
    hit = m.run(qs, max_new_tokens=4, batch_size=16, progress=False)
    assert rows[:5] == [16] * 5 and max(rows[5:]) == 16 and min(rows[5:]) <= 4   # failed, split, retried
    assert_same(hit, clean)
