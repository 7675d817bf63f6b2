"""Run by tests/test_distributed.py under `accelerate launch` with two CPU processes (gloo).

    accelerate launch --multi_gpu --num_processes 2 tests/distributed_job.py MODEL_FOLDER OUT.json
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch

from alfred_fm import HuggingFaceModel
from alfred_fm.distributed import encode_distributed, job_state, process_device, run_distributed
from alfred_fm.responses import response_to_json
from long_run_queries import queries

torch.set_num_threads(1)
folder, out = sys.argv[1], sys.argv[2]
state = job_state()
model = HuggingFaceModel(folder, trust_remote_code=False, device_map={"": process_device()})
qs = queries(45)
texts = [f"text number {i} " * (1 + i % 5) for i in range(23)]
result = {
    "rank": state.process_index, "processes": state.num_processes, "backend": str(state.backend),
    "one_by_one": [response_to_json(r) for r in run_distributed(model, qs, batch_size=1, max_new_tokens=4, progress=False)],
    "batched": [response_to_json(r) for r in run_distributed(model, qs, max_new_tokens=4, progress=False)],
    "encode": encode_distributed(model, texts, batch_size=1, progress=False).tolist(),
    # both processes write their shares to one cache file; a second call finds everything there
    "cached": [response_to_json(r) for r in run_distributed(model, qs, cache=f"{out}.sqlite", chunk_size=10,
                                                             batch_size=1, max_new_tokens=4, progress=False)],
}
again = run_distributed(model, qs, cache=f"{out}.sqlite", chunk_size=10, batch_size=1, max_new_tokens=4, progress=False)
result["again"] = [response_to_json(r) for r in again]
result["again_stats"] = model.last_run_stats
with open(f"{out}.{state.process_index}", "w") as f: json.dump(result, f)
state.wait_for_everyone()
state.destroy_process_group()
