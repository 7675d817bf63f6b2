"""Data-parallel run and encode over two processes (accelerate launch, CPU, gloo): the merged answers, in the caller's
order, equal one process's within the numerical contract (1e-4: two computations of the same numbers, in other
processes and batches), with the same predictions."""
import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alfred_fm import CompletionQuery, HuggingFaceModel
from alfred_fm.fixtures import tiny_llama
from alfred_fm.responses import response_from_json
from long_run_queries import queries
from reference import assert_same

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow   # starts two processes with accelerate launch
def test_two_processes_equal_one(tmp_path):
    folder = str(tiny_llama(tmp_path / "model"))
    accelerate = Path(sys.executable).parent / "accelerate"
    cmd = [str(accelerate) if accelerate.exists() else "accelerate", "launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), str(HERE / "distributed_job.py"), folder, str(tmp_path / "out")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           "CUDA_VISIBLE_DEVICES": ""}
    job = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert job.returncode == 0, job.stderr[-4000:]
    results = [json.loads((tmp_path / f"out.{r}").read_text()) for r in (0, 1)]
    assert [r["processes"] for r in results] == [2, 2] and results[0]["backend"] == "gloo"
    assert results[0]["one_by_one"] == results[1]["one_by_one"]       # every process has all the answers

    torch.set_num_threads(1)
    try:
        m = HuggingFaceModel(folder, trust_remote_code=False)
        qs = queries(45)
        alone = m.run(qs, batch_size=1, max_new_tokens=4, progress=False)
        batched = m.run(qs, max_new_tokens=4, progress=False)
        texts = [f"text number {i} " * (1 + i % 5) for i in range(23)]
        encoded = m.encode(texts, batch_size=1, progress=False)
    finally:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    merged = [response_from_json(r) for r in results[0]["one_by_one"]]
    assert_same(merged, alone)                                          # in the caller's order
    assert_same([response_from_json(r) for r in results[0]["batched"]], batched)
    assert_same(torch.tensor(results[0]["encode"]), encoded)
    # one SQLite cache shared by both processes: all 45 answers stored, each process found its share there the
    # second time (23 and 22 queries), and the answers equal the uncached ones
    assert_same([response_from_json(r) for r in results[0]["cached"]], alone)
    assert [r["again_stats"] for r in results] == [{"cached": 23, "computed": 0}, {"cached": 22, "computed": 0}]
    assert results[0]["again"] == results[0]["cached"]
    with sqlite3.connect(tmp_path / "out.sqlite") as c:
        assert c.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 45


def test_runs_sharing_a_cache_compute_each_answer_once(tmp_path):
    """Two runs of the same queries at once (threads, each with its own model and SQLite connection; processes work
    the same way): every answer is computed by one of them and read from the cache by the other, never twice."""
    import threading, time
    folder = str(tiny_llama(tmp_path / "model"))
    models = [HuggingFaceModel(folder, trust_remote_code=False) for _ in range(2)]
    for m in models:   # slow forwards, so the two runs overlap
        forward = m.model.forward
        m.model.forward = lambda *a, _f=forward, **k: (time.sleep(0.02), _f(*a, **k))[1]
    qs, db, start = queries(40), tmp_path / "shared.sqlite", threading.Barrier(2)
    results = [None, None]
    def job(n):
        start.wait()
        results[n] = models[n].run(qs, cache=db, chunk_size=4, max_new_tokens=3, progress=False)
    threads = [threading.Thread(target=job, args=(n,)) for n in (0, 1)]
    for t in threads: t.start()
    for t in threads: t.join(timeout=300)
    stats = [m.last_run_stats for m in models]
    assert sum(s["computed"] for s in stats) == 40, stats                # each answer computed once
    assert all(s["computed"] + s["cached"] == 40 for s in stats), stats   # and every run has all of them
    assert results[0] == results[1]
    assert_same(results[0], models[0].run(qs, cache=tmp_path / "fresh.sqlite", chunk_size=4, max_new_tokens=3, progress=False))
    with sqlite3.connect(db) as c: assert c.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0


def test_a_dead_runs_claims_are_taken_over(tmp_path):
    import socket, time
    folder = str(tiny_llama(tmp_path / "model"))
    m = HuggingFaceModel(folder, trust_remote_code=False)
    qs, db = queries(10), tmp_path / "shared.sqlite"                     # the last one a prompt to complete
    keys = [m.query_key(q, {"max_new_tokens": 3} if isinstance(q, CompletionQuery) else {}) for q in qs]
    m.run(qs[:1], cache=db, progress=False)                               # creates the tables
    with sqlite3.connect(db) as c:
        c.executemany("INSERT INTO claims VALUES (?, ?, ?)", [(k, f"{socket.gethostname()}:999999999:x", time.time() + 3600)
                                                              for k in keys[:3]])                 # a killed process
        c.executemany("INSERT INTO claims VALUES (?, ?, ?)", [(k, "elsewhere:1:x", time.time() - 1) for k in keys[3:]])  # expired
    began = time.time()
    m.run(qs, cache=db, max_new_tokens=3, progress=False)
    assert m.last_run_stats == {"cached": 1, "computed": 9} and time.time() - began < 60
