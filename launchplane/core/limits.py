"""Sizes the queue server and its clients agree on, so that neither side guesses.

The server refuses a request body over its ``max_body_bytes`` with 413
before parsing it; its default is :data:`MAX_BODY_BYTES`, and the agent sizes
each log batch under that same number, so a default server never refuses one.
"""

from __future__ import annotations

MAX_BODY_BYTES = 1 << 20
"""The server's default request body limit (``ServerSettings.max_body_bytes``), 1 MiB."""

MAX_LINE_BYTES = 64 * 1024
"""A log line longer than this (UTF-8) is stored as pieces of at most this size, in order.

The runners cut their output at this size as they read it; the agent cuts any
longer line it is given (a plugin's ``ctx.log``, a third-party runner's output)
the same way, so no one line can outgrow a log batch."""
