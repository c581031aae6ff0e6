"""One redactor per process: every secret value, and its common encodings, becomes ``***``.

The agent registers each resolved secret value here before anyone else sees
it, so logs, run records, API responses and error messages can be scrubbed.
Redaction is for accidental leaks; a job that holds a secret can always send
it out on purpose.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_SECRET_LENGTH = 4
"""Shorter values are not redacted: scrubbing every "abc" or "1" would mangle all output."""


class Redactor:
    """Replaces every registered secret value, and its common encodings, with ``***``.

    One process holds one redactor, shared by all jobs and tasks: values are
    only ever added, and the compiled pattern is swapped atomically, so
    :meth:`scrub` needs no lock.
    """

    def __init__(self) -> None:
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, value: str) -> bool:
        """Register a value; False (and nothing registered) when it is too short to redact."""
        if len(value) < MIN_SECRET_LENGTH:
            return False
        forms = {form for form in _encoded_forms(value) if len(form) >= MIN_SECRET_LENGTH}
        with self._lock:
            if not forms <= self._forms:
                self._forms |= forms
                self._pattern = _alternation(self._forms)
        return True

    def scrub(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def scrub_obj(self, obj: Any) -> Any:
        """A copy of ``obj`` with every string (mapping keys too) scrubbed.

        Walks dicts, lists and tuples; other values are returned unchanged.
        """
        if isinstance(obj, str):
            return self.scrub(obj)
        if isinstance(obj, Mapping):
            return {self.scrub_obj(k): self.scrub_obj(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return type(obj)(self.scrub_obj(item) for item in obj)
        return obj


def _encoded_forms(value: str) -> Iterator[str]:
    """The value as it may show up in output: raw, base64, URL-encoded, JSON-escaped, per line.

    base64 forms only match where the value was encoded on its own (``echo -n
    $S | base64``, a ``Basic`` header of a token); a secret embedded in a
    longer base64 blob is not recognisable.
    """
    yield value
    raw = value.encode()
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode("ascii")
        yield text
        yield text.rstrip("=")
    yield quote(value)
    yield quote(value, safe="")
    yield quote_plus(value)
    yield json.dumps(value)[1:-1]
    yield from (line.strip() for line in value.splitlines())


def _alternation(forms: set[str]) -> re.Pattern[str]:
    # Longest first, so a value is masked whole, not just a shorter value it contains.
    ordered = sorted(forms, key=lambda form: (-len(form), form))
    return re.compile("|".join(re.escape(form) for form in ordered))
