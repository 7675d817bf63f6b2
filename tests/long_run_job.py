"""A labelling job for tests/test_long_runs.py, run in its own process so that the test can kill it.

    python tests/long_run_job.py MODEL_FOLDER CACHE.sqlite N_QUERIES THREADS

The tiny test model answers a thousand queries a second, too fast to kill half way on purpose; each forward pass
here also sleeps 20 ms, as a bigger model would take its time (the numbers do not change).
"""
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch

from alfred_fm import HuggingFaceModel
from long_run_queries import queries

folder, cache, n, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(threads)   # the same as the test process, so the numbers are the same bit for bit
m = HuggingFaceModel(folder, trust_remote_code=False)
forward = m.model.forward
def slow_forward(*args, **kwargs):
    time.sleep(0.02)
    return forward(*args, **kwargs)
m.model.forward = slow_forward
m.run(queries(n), cache=cache, chunk_size=100, max_new_tokens=4, progress=False)
print("finished", flush=True)
