# The benchmark's steady-state probe: it runs pytorchexample.py as it is, then times the forward
# pass of the example's own model on its own input again, after a warm-up, and prints the median
# as "forward-ms MS". Run natively and under ppml run, it compares the inference itself, start-up
# and file reading aside.

import runpy
import statistics
import time

import torch

example = runpy.run_path("pytorchexample.py")
model, batch = example["alexnet"], example["batch_t"]

for _ in range(5):
    model(batch)
times = []
for _ in range(30):
    start = time.perf_counter()
    model(batch)
    times.append(time.perf_counter() - start)
print("forward-ms %.3f threads %d" % (statistics.median(times) * 1e3, torch.get_num_threads()))
