"""Worker for tests/test_distributed.py: a few S-TLLR training steps, data-parallel or not.

Run as ``python -m torch.distributed.run --nproc_per_node 2 tests/ddp_worker.py OUT FEEDBACK``
or plainly with ``WORLD_SIZE`` unset (single process, whole batches).
"""

import sys

import torch

from stllr import distributed
from stllr.models.shd import SHDNetBPTT, SHDNetSTLLR
from stllr.trainer import ListDataset, run_epoch


def main(out: str, feedback: str) -> None:
    """``feedback`` BP, DFA or sDFA (S-TLLR), or BPTT (plain backprop through time)."""
    distributed.init_from_env("cpu")  # gloo: the model stays on the CPU
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    g = torch.Generator().manual_seed(0)
    # lengths differ within a batch: each rank's shard is padded to the whole batch's
    # 13 samples, batches of 8: the last batch splits 3 + 2, so the averaged gradients
    # must be weighted by each rank's share
    samples = [(torch.rand(8 + i % 5, 30, generator=g) < 0.3).double() for i in range(13)]
    labels = torch.randint(0, 5, (13,), generator=g)
    torch.manual_seed(1)
    if feedback == "BPTT":
        model, mode = SHDNetBPTT(num_inputs=30, hidden=20, num_classes=5), "bptt"
    else:
        model = SHDNetSTLLR(num_inputs=30, hidden=20, num_classes=5, feedback=feedback)
        mode = "stllr"
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    if distributed.is_distributed():
        opt = distributed.GradientAllReduce(opt, model.batch_summed_parameters())
    loss, acc = run_epoch(
        model, ListDataset(samples, labels), 8, opt, mode, 6, torch.Generator().manual_seed(2)
    )
    if distributed.rank() == 0:
        torch.save({"state": model.state_dict(), "loss": loss, "acc": acc}, out)
    if distributed.is_distributed():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
