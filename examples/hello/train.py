"""A tiny training script: logistic regression by gradient descent, stdlib only.

It is what a real training script does, in miniature: read hyperparameters,
train with a fixed seed, print progress, and write a checkpoint where the
launcher says outputs go. Run it directly (``python train.py --epochs 5``) or
through launchplane (``launchplane run job.yaml``).

Hyperparameters, later sources winning: built-in defaults, the JSON object in
``$LAUNCHPLANE_HYPERPARAMETERS`` (set by the agent from the job's
``hyperparameters:``), then ``--epochs`` / ``--lr`` / ``--seed``.
The checkpoint goes to ``$LAUNCHPLANE_OUTPUT_DIR`` (default ``./output``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from pathlib import Path

DEFAULTS = {"epochs": 100, "lr": 0.5, "seed": 7, "samples": 2000}
TRUE_WEIGHTS = [1.5, -2.0, 0.75, 0.0]
TRUE_BIAS = -0.25


def hyperparameters(argv: list[str] | None = None) -> dict[str, float]:
    params = dict(DEFAULTS)
    params.update(json.loads(os.environ.get("LAUNCHPLANE_HYPERPARAMETERS") or "{}"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--seed", type=int)
    given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    params.update(given)
    return params


def synthetic_data(samples: int, rng: random.Random) -> list[tuple[list[float], int]]:
    """Points labelled by a known logistic model, so the fit can be checked."""
    data = []
    for _ in range(samples):
        x = [rng.gauss(0.0, 1.0) for _ in TRUE_WEIGHTS]
        z = sum(w * xi for w, xi in zip(TRUE_WEIGHTS, x, strict=True)) + TRUE_BIAS
        data.append((x, 1 if rng.random() < 1 / (1 + math.exp(-z)) else 0))
    return data


def train(params: dict[str, float]) -> dict[str, object]:
    rng = random.Random(int(params["seed"]))
    data = synthetic_data(int(params["samples"]), rng)
    weights = [0.0] * len(TRUE_WEIGHTS)
    bias = 0.0
    lr = float(params["lr"])
    epochs = int(params["epochs"])
    n = len(data)
    loss = accuracy = 0.0
    for epoch in range(1, epochs + 1):
        grad_w = [0.0] * len(weights)
        grad_b = loss = correct = 0.0
        for x, y in data:
            z = sum(w * xi for w, xi in zip(weights, x, strict=True)) + bias
            p = 1 / (1 + math.exp(-z))
            loss -= math.log(p if y else 1 - p)
            correct += (p >= 0.5) == bool(y)
            for i, xi in enumerate(x):
                grad_w[i] += (p - y) * xi
            grad_b += p - y
        weights = [w - lr * g / n for w, g in zip(weights, grad_w, strict=True)]
        bias -= lr * grad_b / n
        loss, accuracy = loss / n, correct / n
        if epoch == 1 or epoch % max(1, epochs // 10) == 0:
            print(
                f"epoch {epoch:3d}/{epochs}  loss {loss:.4f}  accuracy {accuracy:.3f}", flush=True
            )
    return {"weights": weights, "bias": bias, "loss": loss, "accuracy": accuracy}


def main() -> None:
    params = hyperparameters()
    print(f"training with {json.dumps(params, sort_keys=True)}", flush=True)
    started = time.perf_counter()
    result = train(params)
    output = Path(os.environ.get("LAUNCHPLANE_OUTPUT_DIR") or "output")
    output.mkdir(parents=True, exist_ok=True)
    checkpoint = output / "checkpoint.json"
    checkpoint.write_text(
        json.dumps(
            {
                "hyperparameters": params,
                "weights": result["weights"],
                "bias": result["bias"],
                "metrics": {"loss": result["loss"], "accuracy": result["accuracy"]},
                "seconds": round(time.perf_counter() - started, 3),
                "job_id": os.environ.get("LAUNCHPLANE_JOB_ID"),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote checkpoint to {checkpoint.resolve()}", flush=True)


if __name__ == "__main__":
    main()
