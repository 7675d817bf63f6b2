"""`map_batches` under memory pressure: the out-of-memory split frees what the failed batch held before it retries."""
import weakref

import torch

from alfred_fm.batching import map_batches


def test_oom_retry_frees_the_failed_batch_first():
    "A tensor made by a batch that ran out of memory is gone by the time its halves run (no traceback keeps it)."
    held, alive_at_retry = [], []

    def fn(batch):
        if held: alive_at_retry.append(held[-1]() is not None)
        work = torch.ones(len(batch), 1024)   # the failed batch's activations
        held.append(weakref.ref(work))
        if len(batch) > 1: raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return [float(work.sum())] * len(batch)

    stats = {}
    assert map_batches(fn, list("abcd"), [1] * 4, progress=False, stats=stats) == [1024.0] * 4
    assert stats["oom_splits"] == 3
    assert alive_at_retry and not any(alive_at_retry), alive_at_retry
