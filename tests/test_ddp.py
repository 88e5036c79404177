import os
import subprocess
import sys
from pathlib import Path

import torch


def test_torchrun_two_cpu_processes_keep_identical_weights(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).with_name("_ddp_worker.py")), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    for k in r0["final"]:
        assert torch.equal(r0["final"][k], r1["final"][k]), k  # gradients were all-reduced every step
    assert any(not torch.equal(r0["init"][k], r0["final"][k]) for k in r0["init"])  # and training happened
    assert (tmp_path / "stage" / "best.pt").exists()  # rank 0 wrote the checkpoint
