# All-reduce bandwidth: the nodes sum a tensor of 16 MiB over gloo, ROUNDS times, and rank 0
# prints the bandwidth of the all-reduce (bytes reduced per second), as torchrun and DDP would
# see it over whatever network joins them.

import os
import time

import torch
import torch.distributed as dist

ROUNDS = int(os.environ.get("ROUNDS", "20"))
dist.init_process_group("gloo")
x = torch.ones(4 << 20)  # 16 MiB of float32
dist.all_reduce(x)  # connections, warm-up
dist.barrier()
start = time.perf_counter()
for _ in range(ROUNDS):
    dist.all_reduce(x)
took = time.perf_counter() - start
if dist.get_rank() == 0:
    print("allreduce %.1f MB/s" % (ROUNDS * x.numel() * 4 / took / 1e6), flush=True)
dist.destroy_process_group()
