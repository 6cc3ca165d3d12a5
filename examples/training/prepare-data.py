# The data owner's step: scikit-learn's bundled digits (1,797 images of 8x8 pixels, 16 grey
# levels), split into training and test sets with a fixed seed and written as NumPy archives:
# OUTDIR/train.npz and OUTDIR/test.npz, each with "images" (float32, N x 64, scaled to 0..1) and
# "labels" (int64). The owner encrypts them before they leave her machine.
#
#   /usr/bin/python3 prepare-data.py OUTDIR

import os
import sys

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

out = sys.argv[1]
os.makedirs(out, exist_ok=True)

digits = load_digits()
images = (digits.data / 16.0).astype(np.float32)
labels = digits.target.astype(np.int64)
train_x, test_x, train_y, test_y = train_test_split(
    images, labels, test_size=0.25, random_state=0, stratify=labels)

np.savez(os.path.join(out, "train.npz"), images=train_x, labels=train_y)
np.savez(os.path.join(out, "test.npz"), images=test_x, labels=test_y)
print("wrote %d training and %d test images to %s" % (len(train_y), len(test_y), out))
