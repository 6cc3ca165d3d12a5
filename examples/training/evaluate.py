# Confidential inference with the trained model: reads /output/model.pt and the owner's test set
# /data/test.npz, classifies every test image and writes the accuracy to /output/evaluation.txt,
# which only the owner can decrypt.

import numpy as np
import torch

from net import make_net

with np.load("/data/test.npz") as f:
    images = torch.from_numpy(f["images"])
    labels = torch.from_numpy(f["labels"])

net = make_net()
net.load_state_dict(torch.load("/output/model.pt"))
net.eval()
with torch.no_grad():
    predicted = net(images).argmax(dim=1)
correct = int((predicted == labels).sum())

with open("/output/evaluation.txt", "w") as f:
    f.write("accuracy %.4f (%d of %d test images)\n" % (correct / len(labels), correct, len(labels)))
print("Done. The evaluation was written to `/output/evaluation.txt`.")
