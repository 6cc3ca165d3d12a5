# The smallest confidential workload: it reads its input and writes a result.
with open("/data/input.txt") as f:
    text = f.read()
with open("/data/result.txt", "w") as f:
    f.write(text.upper())
