"""The container runners' 64 KiB line cut never splits a character of a secret (issue 15).

Docker and Kubernetes output goes through ``LineSplitter``; a line longer
than ``MAX_LINE_BYTES`` is cut into pieces. Cut inside a multi-byte
character, both pieces decoded it as U+FFFD, and the redactor could no longer
recognise a non-ASCII secret across the cut. A unit test: the splitter is fed
bytes as a container stream delivers them (no engine is needed for that).
"""

from __future__ import annotations

from launchplane.core.limits import MAX_LINE_BYTES
from launchplane.core.output import LineSplitter
from launchplane.core.redaction import Redactor

SECRET = "gehéimes-Pässwort-ÄÖÜ-42"


def test_a_non_ascii_secret_across_the_line_cut_is_masked() -> None:
    raw = SECRET.encode()
    # The cut falls inside the two bytes of the first "é".
    at = raw.index("é".encode()) + 1
    line = b"x" * (MAX_LINE_BYTES - at) + raw + b" tail\n"
    splitter = LineSplitter()
    pieces = splitter.feed(line[:-1]) + splitter.feed(b"\n") + splitter.flush()
    assert len(pieces) == 2
    assert "\ufffd" not in "".join(pieces)
    assert all(len(piece.encode()) <= MAX_LINE_BYTES for piece in pieces)

    redactor = Redactor()
    redactor.add(SECRET)
    out: list[str] = []
    window = redactor.window(out.append)
    for piece in pieces:
        window.feed(piece)
    window.close()
    assert out[0].endswith("x***") and out[1] == "*** tail"
