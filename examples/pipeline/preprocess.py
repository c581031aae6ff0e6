"""Stage 1 of the pipeline example: make the dataset the training stage consumes.

Writes ``processed-dataset/`` in ``$LAUNCHPLANE_OUTPUT_DIR``: ``train.csv``
(synthetic points labelled by a known logistic model, each feature
standardised) and ``stats.json`` (the means and deviations it removed).
The job's ``output_artifacts`` entry uploads that folder as a new version of
``processed-dataset`` once the job has succeeded. Stdlib only, deterministic
for a given ``seed`` and ``samples`` (hyperparameters).
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
from pathlib import Path

DEFAULTS = {"seed": 7, "samples": 2000}
TRUE_WEIGHTS = [1.5, -2.0, 0.75, 0.0]
TRUE_BIAS = -0.25


def main() -> None:
    params = {**DEFAULTS, **json.loads(os.environ.get("LAUNCHPLANE_HYPERPARAMETERS") or "{}")}
    rng = random.Random(int(params["seed"]))
    rows = []
    for _ in range(int(params["samples"])):
        x = [rng.gauss(0.0, 1.0) * 3 + 1 for _ in TRUE_WEIGHTS]
        z = sum(w * (xi - 1) / 3 for w, xi in zip(TRUE_WEIGHTS, x, strict=True)) + TRUE_BIAS
        rows.append((x, 1 if rng.random() < 1 / (1 + math.exp(-z)) else 0))
    columns = list(zip(*(x for x, _ in rows), strict=True))
    means = [sum(c) / len(c) for c in columns]
    spreads = [
        math.sqrt(sum((v - m) ** 2 for v in c) / len(c))
        for c, m in zip(columns, means, strict=True)
    ]
    out = Path(os.environ.get("LAUNCHPLANE_OUTPUT_DIR") or "output") / "processed-dataset"
    out.mkdir(parents=True, exist_ok=True)
    with (out / "train.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([f"x{i}" for i in range(len(TRUE_WEIGHTS))] + ["label"])
        for x, label in rows:
            scaled = [(v - m) / s for v, m, s in zip(x, means, spreads, strict=True)]
            writer.writerow([f"{v:.6f}" for v in scaled] + [label])
    (out / "stats.json").write_text(
        json.dumps({"means": means, "spreads": spreads}, indent=2) + "\n"
    )
    print(f"wrote {len(rows)} rows to {out}", flush=True)


if __name__ == "__main__":
    main()
