"""PyTorch timings for gradserve_bench: fwd+bwd of the same cases, median
of --reps after --warmup, printed as one line "median p10 p90" in ms.

Run with Debian's /usr/bin/python3; gradserve_bench starts it with
OPENBLAS_NUM_THREADS=1 and --threads equal to its own OpenMP threads."""

import argparse
import time

import torch
import torch.nn.functional as F


def conv_case():
    x = torch.randn(8, 64, 56, 56, requires_grad=True)
    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    dy = torch.randn(8, 64, 56, 56)

    def step():
        conv.zero_grad(set_to_none=True)
        x.grad = None
        conv(x).backward(dy)
    return step


def linear_case():
    x = torch.randn(256, 1024, requires_grad=True)
    fc = torch.nn.Linear(1024, 1024)
    dy = torch.randn(256, 1024)

    def step():
        fc.zero_grad(set_to_none=True)
        x.grad = None
        fc(x).backward(dy)
    return step


class SmallCnn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(16)
        self.c2 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = torch.nn.BatchNorm2d(32)
        self.fc = torch.nn.Linear(32 * 8 * 8, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.c1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.c2(x))), 2)
        return self.fc(torch.flatten(x, 1))


def cnn_case():
    model = SmallCnn().train()
    x = torch.randn(32, 3, 32, 32)
    labels = torch.randint(0, 10, (32,))

    def step():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), labels).backward()
    return step


def resnet18_case(export_path):
    """torchvision's resnet18 (random weights), batch 2 of 3x224x224, in
    training mode: fwd+bwd from a seed dL/dy to every parameter and x. With
    export_path, also written there as ONNX (PRESERVE: BatchNorm trains)."""
    import io

    import torchvision
    model = torchvision.models.resnet18().train()
    x = torch.randn(2, 3, 224, 224, requires_grad=True)
    dy = torch.randn(2, 1000)
    if export_path:
        f = io.BytesIO()
        torch.onnx.export(model, x.detach(), f, input_names=["x"], output_names=["y"],
                          training=torch.onnx.TrainingMode.PRESERVE,
                          do_constant_folding=False)
        with open(export_path, "wb") as out:
            out.write(f.getvalue())

    def step():
        model.zero_grad(set_to_none=True)
        x.grad = None
        model(x).backward(dy)
    return step


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=["linear", "conv", "cnn", "resnet18"])
    parser.add_argument("--export", default="", help="resnet18: write its ONNX here")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    step = {"linear": linear_case, "conv": conv_case, "cnn": cnn_case,
            "resnet18": lambda: resnet18_case(args.export)}[args.case]()
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.reps):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    at = lambda q: times[int(q * (len(times) - 1))]  # noqa: E731
    print(f"{at(0.5):.4f} {at(0.1):.4f} {at(0.9):.4f}")


if __name__ == "__main__":
    main()
