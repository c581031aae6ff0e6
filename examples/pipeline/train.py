"""Stage 2 of the pipeline example: train on the dataset stage 1 produced.

The agent resolves the job's input artifact ``processed-dataset:latest`` to a
version, downloads it (once per content digest) and puts it where
``$LAUNCHPLANE_ARTIFACT_PROCESSED_DATASET`` says; the run record pins that
version and digest, so ``launchplane reproduce`` of this run trains on the
same bytes even after ``latest`` has moved. Prints the loss and accuracy of a
logistic regression fitted by gradient descent (deterministic), and writes a
checkpoint to ``$LAUNCHPLANE_OUTPUT_DIR``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import sys
from pathlib import Path

DEFAULTS = {"epochs": 100, "lr": 0.5}


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)  # each progress line as it happens
    params = {**DEFAULTS, **json.loads(os.environ.get("LAUNCHPLANE_HYPERPARAMETERS") or "{}")}
    data_dir = Path(os.environ["LAUNCHPLANE_ARTIFACT_PROCESSED_DATASET"])
    raw = (data_dir / "train.csv").read_bytes()
    print(f"dataset sha256 {hashlib.sha256(raw).hexdigest()[:16]} from {data_dir}", flush=True)
    with (data_dir / "train.csv").open(newline="") as f:
        reader = csv.reader(f)
        next(reader)
        data = [([float(v) for v in row[:-1]], int(row[-1])) for row in reader]
    weights, bias, n = [0.0] * len(data[0][0]), 0.0, len(data)
    loss = accuracy = 0.0
    epochs, lr = int(params["epochs"]), float(params["lr"])
    for epoch in range(1, epochs + 1):
        grad_w, grad_b, loss, correct = [0.0] * len(weights), 0.0, 0.0, 0
        for x, y in data:
            p = 1 / (1 + math.exp(-(sum(w * xi for w, xi in zip(weights, x, strict=True)) + bias)))
            loss -= math.log(p if y else 1 - p)
            correct += (p >= 0.5) == bool(y)
            for i, xi in enumerate(x):
                grad_w[i] += (p - y) * xi
            grad_b += p - y
        weights = [w - lr * g / n for w, g in zip(weights, grad_w, strict=True)]
        bias -= lr * grad_b / n
        loss, accuracy = loss / n, correct / n
        if epoch == 1 or epoch % max(1, epochs // 5) == 0:
            print(
                f"epoch {epoch:3d}/{epochs}  loss {loss:.6f}  accuracy {accuracy:.4f}", flush=True
            )
    out = Path(os.environ.get("LAUNCHPLANE_OUTPUT_DIR") or "output")
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoint.json").write_text(
        json.dumps({"weights": weights, "bias": bias, "loss": loss, "accuracy": accuracy}) + "\n"
    )
    print(f"final loss {loss:.6f} accuracy {accuracy:.4f}", flush=True)


if __name__ == "__main__":
    main()
