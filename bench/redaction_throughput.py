#!/usr/bin/env python3
"""Redaction throughput: log lines per second through the agent's redactor.

Every line a workload prints passes the agent's redactor before it is sent
(``JobPipeline._pump``): this is the cost of that hot path, in process.

* **8 secrets** registered (the forms of each: hex, base64 at every offset,
  URL encodings...): a W&B key, a Hugging Face token, an AWS secret key, a
  GitHub token, a JWT, a database password, a 64-digit hex key, a password
  with symbols - more than a typical queue has.
* **The line mix** (seeded, 20,000 lines): training progress lines, logging
  lines with paths and URLs, JSON metrics (~500 characters), tqdm bars,
  warnings, and 1% of lines with a secret in them (raw, base64, URL-encoded,
  split over two lines).
* **stream**: ``Redactor.window(...).feed(line)`` - what the agent does per
  output line (a secret split over lines is masked; a line whose end may start
  a secret is held until the next one). **per line**: ``Redactor.scrub(line)``
  of each line alone - the agent's hot path before the window existed, so the
  two can be compared run against run (``git stash`` the change, run again).
  **no secrets**: the stream when no secret was registered.

Each figure is the median of several timed passes over the lines (after a
warm-up), with the pass-to-pass spread.

    .venv/bin/python bench/redaction_throughput.py [--quick]
"""

from __future__ import annotations

import base64
import random
import string
import time
from collections.abc import Callable
from urllib.parse import quote_plus

import _common as c

LINES = 20_000
TARGET = 100_000.0
"""Lines/s the stream should sustain on one core: well above what the server stores (a line
costs it ~15 us on SQLite), so the redactor is never what slows a chatty job's log."""


def secrets(rng: random.Random) -> list[str]:
    def pick(alphabet: str, n: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(n))

    alnum = string.ascii_letters + string.digits
    jwt = ".".join(
        base64.urlsafe_b64encode(pick(alnum, n).encode()).decode().rstrip("=") for n in (36, 90, 32)
    )
    return [
        pick("0123456789abcdef", 40),  # W&B API key
        "hf_" + pick(alnum, 34),
        pick(alnum + "/+", 40),  # AWS secret access key
        "ghp_" + pick(alnum, 36),
        jwt,
        pick(alnum, 16),  # database password
        pick("0123456789abcdef", 64),
        pick(alnum + "!@#$%^&*", 24),
    ]


def lines(rng: random.Random, values: list[str]) -> list[str]:
    """The seeded line mix (see the module)."""
    words = ["loading", "saving", "checkpoint", "epoch", "model", "tokenizer", "dataset", "cache"]
    out: list[str] = []
    while len(out) < LINES:
        kind = rng.random()
        step = rng.randint(1, 50_000)
        if kind < 0.70:
            out.append(
                f"step {step}/50000 loss={rng.random():.4f} lr={rng.random() * 1e-3:.2e} "
                f"tokens/s={rng.random() * 1e5:.1f} gpu_mem={rng.random() * 80:.1f}GiB"
            )
        elif kind < 0.85:
            out.append(
                f"2026-12-02 12:{step % 60:02d}:00,123 INFO [trainer.py:{step % 900}] "
                f"{rng.choice(words)} {rng.choice(words)} to s3://ml-bucket/runs/"
                f"run-{step}/ckpt-{step}.pt"
            )
        elif kind < 0.90:
            metrics = ", ".join(f'"{w}_{i}": {rng.random():.6f}' for i, w in enumerate(words * 2))
            out.append("{" + metrics + "}")
        elif kind < 0.94:
            bar = "\u2588" * (step % 20)
            out.append(f"Epoch {step % 10}: {step % 100:3d}%|{bar:<20}| {step}/50000 [01:23<01:40]")
        elif kind < 0.99:
            out.append(
                f"/usr/lib/python3/site-packages/torch/nn/modules/module.py:{step}: "
                "UserWarning: this overload is deprecated, use the other one instead"
            )
        else:
            value = rng.choice(values)
            form = rng.choice(["raw", "base64", "url", "split"])
            if form == "raw":
                out.append(f"connecting with token {value}")
            elif form == "base64":
                out.append(
                    f"Authorization: Basic {base64.b64encode(b'user:' + value.encode()).decode()}"
                )
            elif form == "url":
                out.append(f"GET https://api.example.com/v1?key={quote_plus(value)}&page=2")
            else:
                out += [f"key part one: {value[:7]}", f"{value[7:]} (part two)"]
    return out[:LINES]


def rate(fn: Callable[[], None], passes: int) -> list[float]:
    """Lines per second of ``fn`` (one pass over the lines), for ``passes`` timed passes."""
    fn()  # warm-up
    rates = []
    for _ in range(passes):
        start = time.perf_counter()
        fn()
        rates.append(LINES / (time.perf_counter() - start))
    return rates


def main() -> None:
    parser = c.arguments(__doc__.splitlines()[0])
    args = parser.parse_args()
    report = c.Report(
        "redaction_throughput", "Redaction throughput (the agent's log hot path)", args
    )
    from launchplane.core.redaction import Redactor

    rng = random.Random(15)
    values = secrets(rng)
    sample = lines(rng, values)
    redactor = Redactor()
    for value in values:
        redactor.add(value)
    passes = 3 if args.quick else 7
    report.details["inputs"] = {
        "secrets": len(values),
        "secret_lengths": [len(v) for v in values],
        "lines": LINES,
        "characters": sum(map(len, sample)),
        "forms": len(getattr(redactor, "_forms", ())),
    }

    def per_line() -> None:
        for line in sample:
            redactor.scrub(line)

    per_line_rates = rate(per_line, passes)
    if not hasattr(redactor, "window"):
        report.skip("stream_lines_per_s", "stream (window), 8 secrets", "lines/s", "no window")
    else:
        shipped: list[str] = []

        def stream(r: Redactor = redactor) -> None:
            shipped.clear()
            window = r.window(shipped.append)
            for line in sample:
                window.feed(line)
            window.close()

        def held_lines() -> int:
            """Lines that had to wait for the next one (an untimed pass)."""
            window = redactor.window(lambda line: None)
            held = 0
            for line in sample:
                window.feed(line)
                held += window.holding > 0
            window.close()
            return held

        stream_rates = rate(stream, passes)
        leaked = [line for line in shipped if any(value in line for value in values)]
        if len(shipped) != LINES or leaked:
            raise SystemExit(f"the stream is wrong: {len(shipped)} lines, {len(leaked)} leak")
        report.add(
            "stream_lines_per_s",
            "stream (window.feed), 8 secrets",
            c.percentile(stream_rates, 50),
            "lines/s",
            (">=", TARGET),
            f"median of {passes} passes",
            spread=c.spread(stream_rates),
        )
        report.add(
            "held_fraction",
            "lines held for the next one",
            round(held_lines() / LINES * 100, 1),
            "%",
            None,
            "their end may start a secret",
        )
        bare = Redactor()
        no_secret_rates = rate(lambda: stream(bare), passes)
        report.add(
            "no_secret_lines_per_s",
            "stream, no secret registered",
            c.percentile(no_secret_rates, 50),
            "lines/s",
            None,
            f"median of {passes} passes",
            spread=c.spread(no_secret_rates),
        )
    report.add(
        "per_line_lines_per_s",
        "scrub(line) per line, 8 secrets",
        c.percentile(per_line_rates, 50),
        "lines/s",
        None,
        "the hot path before the window",
        spread=c.spread(per_line_rates),
    )
    report.finish()


if __name__ == "__main__":
    main()
