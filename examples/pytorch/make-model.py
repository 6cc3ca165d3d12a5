# The model owner's step, in place of Gramine's download-pretrained-model.py: no weights can be
# downloaded here, so it builds torchvision's AlexNet with weights drawn from a fixed seed and
# saves the whole pickled model, as that script does, to alexnet-pretrained.pt. It also copies
# the input image, a sample image that scikit-learn ships (china.jpg), to input.jpg.
#
#   /usr/bin/python3 make-model.py [OUTDIR]
#
# The same seed gives the same weights, so every run of it makes the same model.

import os
import shutil
import sys

import sklearn.datasets
import torch
from torchvision import models

SEED = 0

out = sys.argv[1] if len(sys.argv) > 1 else "."
os.makedirs(out, exist_ok=True)

torch.manual_seed(SEED)
alexnet = models.alexnet(weights=None)
torch.save(alexnet, os.path.join(out, "alexnet-pretrained.pt"))

image = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", "china.jpg")
shutil.copyfile(image, os.path.join(out, "input.jpg"))

print("wrote", os.path.join(out, "alexnet-pretrained.pt"), "(AlexNet, seed %d) and" % SEED,
      os.path.join(out, "input.jpg"), "(scikit-learn's china.jpg)")
