# Confidential training: reads the owner's training set from /data/train.npz, trains net.py's
# network on the CPU with a fixed seed, and writes its weights to /output/model.pt. Under
# ppml run, /data and /output are encrypted mounts: the data is decrypted only inside the
# workload, and the trained model leaves it encrypted. It prints nothing derived from the data.

import time

import numpy as np
import torch
from torch import nn

from net import make_net

EPOCHS = 20
BATCH = 64

start = time.perf_counter()
torch.manual_seed(0)
with np.load("/data/train.npz") as f:
    images = torch.from_numpy(f["images"])
    labels = torch.from_numpy(f["labels"])

net = make_net()
optimizer = torch.optim.Adam(net.parameters(), lr=0.003)
loss_fn = nn.CrossEntropyLoss()
net.train()
for epoch in range(EPOCHS):
    order = torch.randperm(len(labels))
    for i in range(0, len(order), BATCH):
        batch = order[i:i + BATCH]
        optimizer.zero_grad()
        loss = loss_fn(net(images[batch]), labels[batch])
        loss.backward()
        optimizer.step()

torch.save(net.state_dict(), "/output/model.pt")
print("Done. Trained for %d epochs in %.1f s; the model was written to `/output/model.pt`."
      % (EPOCHS, time.perf_counter() - start))
