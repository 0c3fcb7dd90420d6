"""On a CUDA GPU (skipped without one): a tiny run trains there, its first round agrees with the CPU run to
float tolerance, and two GPU runs agree with each other."""

import pytest
import torch

from conftest import TINY, merge
from ticketscope.config import parse_config
from ticketscope.io import load_tensors
from ticketscope.runs import RunDir, run_experiment

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _final(tmp_path, name, device):
    cfg = parse_config(merge(TINY, {"device": device, "prune": {"rounds": 1}}))
    run_experiment(cfg, tmp_path / name, progress=False)
    return load_tensors(RunDir(tmp_path / name).round_dir(0) / "final.safetensors")


def test_gpu_round_matches_cpu_and_repeats(tmp_path):
    cpu, gpu, again = (_final(tmp_path, n, d) for n, d in (("cpu", "cpu"), ("gpu", "cuda"), ("again", "cuda")))
    # 60 SGD steps of a 64-16-2 net: float32 rounding differences (TF32 off by default for matmuls) stay tiny
    for key in cpu:
        torch.testing.assert_close(gpu[key], cpu[key], rtol=1e-3, atol=1e-4)
    assert all(torch.equal(gpu[k], again[k]) for k in gpu), "two GPU runs of one config differ"
