# The PyTorch PPML tutorial's workload, as in Gramine's examples (pytorch/pytorchexample.py): it
# classifies input.jpg with the whole pickled model alexnet-pretrained.pt and writes the five
# most likely classes of classes.txt, with their percentages, to result.txt. It knows nothing of
# encryption: under ppml run these files are encrypted mounts, decrypted and encrypted
# transparently. Relative names resolve under the working folder, / in the manifest.

from torchvision import models
import torch

# Load the model from a file.
alexnet = torch.load("alexnet-pretrained.pt")

# Prepare a transform to get the input image into the format (e.g., x,y dimensions) the
# classifier expects.
from torchvision import transforms
transform = transforms.Compose([
    transforms.Resize(256),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize(
        mean=[0.485, 0.456, 0.406],
        std=[0.229, 0.224, 0.225]
    )])

# Load the image.
from PIL import Image
img = Image.open("input.jpg")

# Apply the transform to the image.
img_t = transform(img)

# Make a batch of one image.
batch_t = torch.unsqueeze(img_t, 0)

# Prepare the model and run the classifier, on the GPU when there is one (under ppml run: a
# manifest rendered with -D gpus=all).
device = "cuda" if torch.cuda.is_available() else "cpu"
alexnet.eval().to(device)
out = alexnet(batch_t.to(device))

# Load the classes from disk.
with open("classes.txt") as f:
    classes = [line.strip() for line in f.readlines()]

# Sort the predictions.
_, indices = torch.sort(out, descending=True)

# Convert into percentages.
percentage = torch.nn.functional.softmax(out, dim=1)[0] * 100

# Write the 5 most likely predictions.
with open("result.txt", "w") as outfile:
    outfile.write(str([(classes[idx], percentage[idx].item()) for idx in indices[0][:5]]))

print("Done. The result was written to `result.txt`.")
