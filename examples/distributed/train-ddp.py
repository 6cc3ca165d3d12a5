# Distributed confidential training: each node reads its shard of the owner's training set from
# $DATA_DIR/train.npz (/data, an encrypted mount, under ppml run), and the nodes train
# examples/training's network together with PyTorch's DistributedDataParallel over gloo, which
# finds its peers through MASTER_ADDR, MASTER_PORT, WORLD_SIZE and RANK (under ppml run, the
# mesh's addresses, set by ppml). Rank 0 writes the weights to $OUTPUT_DIR/model.pt (/output,
# encrypted). With CANARY set, rank 0 first sends it to the others, which check it: the test of
# what crosses the network. It prints the time of each epoch, nothing derived from the data.

import datetime
import os
import time

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from net import make_net

EPOCHS = int(os.environ.get("EPOCHS", "20"))
BATCH = 64  # in all, split between the nodes
DATA = os.environ.get("DATA_DIR", "/data")
OUTPUT = os.environ.get("OUTPUT_DIR", "/output")

# A peer that dies leaves the others waiting on it for this long, then failing.
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=int(os.environ.get("DDP_TIMEOUT", "30"))))
rank, world = dist.get_rank(), dist.get_world_size()
print("node %d of %d" % (rank, world), flush=True)

canary = os.environ.get("CANARY", "")
if canary:
    message = torch.frombuffer(bytearray(canary.encode() * 4096), dtype=torch.uint8).clone()
    if rank != 0:
        message.zero_()
    dist.broadcast(message, 0)
    print("canary", "received" if bytes(message.numpy()) == canary.encode() * 4096 else "differs", flush=True)

torch.manual_seed(0)
with np.load(os.path.join(DATA, "train.npz")) as f:
    images = torch.from_numpy(f["images"])
    labels = torch.from_numpy(f["labels"])

net = DistributedDataParallel(make_net())
optimizer = torch.optim.Adam(net.parameters(), lr=0.003)
loss_fn = nn.CrossEntropyLoss()
net.train()
local = BATCH // world
for epoch in range(EPOCHS):
    start = time.perf_counter()
    order = torch.randperm(len(labels))
    # Every node takes as many steps: the shards are of one size.
    for i in range(0, len(order) - local + 1, local):
        batch = order[i:i + local]
        optimizer.zero_grad()
        loss_fn(net(images[batch]), labels[batch]).backward()
        optimizer.step()
    dist.barrier()
    print("epoch %d time %.4f" % (epoch, time.perf_counter() - start), flush=True)

if rank == 0:
    torch.save(net.module.state_dict(), os.path.join(OUTPUT, "model.pt"))
    print("Done. The model was written to `%s/model.pt`." % OUTPUT)
dist.destroy_process_group()
