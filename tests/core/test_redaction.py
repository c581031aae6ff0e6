"""The redactor's forms, its line window and its cuts (issue 15, "Redaction gaps").

Unit tests of :mod:`launchplane.core.redaction`; the same findings through a
real agent and server are in tests/security/test_redaction_leaks.py.
"""

from __future__ import annotations

import base64
import re
import time
from urllib.parse import quote, quote_plus

import anyio
import pytest

from launchplane.core.redaction import HOLD_SECONDS, MIN_FRAGMENT, Redactor

CANARY = "cAnary-S3cr3t/ZQ81+x y"
"""Needs URL quoting (``/``, ``+``, space), so its URL forms differ from the raw value."""


@pytest.fixture
def redactor() -> Redactor:
    redactor = Redactor()
    assert redactor.add(CANARY)
    return redactor


def stream(redactor: Redactor, lines: list[str]) -> list[str]:
    """``lines`` through one window, as a job's output goes through the agent."""
    out: list[str] = []
    window = redactor.window(out.append)
    for line in lines:
        window.feed(line)
    window.close()
    assert len(out) == len(lines)  # one line out per line in, in order
    return out


def lower_escapes(url: str) -> str:
    """``%2F`` -> ``%2f``: how some clients (and ``encodeURIComponent`` ports) spell them."""
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), url)


def secret_bytes_in(text: str, altchars: bytes | None) -> bool:
    """Whether any 4 consecutive bytes of the secret decode out of ``text`` at any offset."""
    raw = CANARY.encode()
    for shift in range(4):
        chunk = text[shift:]
        decoded = base64.b64decode(chunk[: len(chunk) // 4 * 4], altchars=altchars)
        if any(raw[i : i + 4] in decoded for i in range(len(raw) - 3)):
            return True
    return False


# --- forms -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label", "form"),
    [
        ("hex", CANARY.encode().hex()),
        ("HEX", CANARY.encode().hex().upper()),
        ("url lower-case escapes", lower_escapes(quote(CANARY, safe=""))),
        ("url lower-case, quote_plus", lower_escapes(quote_plus(CANARY))),
        ("url upper-case escapes", quote(CANARY, safe="")),
    ],
)
def test_hex_and_url_forms_are_masked(redactor: Redactor, label: str, form: str) -> None:
    assert CANARY not in form
    assert redactor.scrub(f"value=<{form}>") == "value=<***>", label


@pytest.mark.parametrize("before", [b"", b"x", b"xy", b"xyz", b"user:", b'{"k": "'])
@pytest.mark.parametrize("alphabet", ["standard", "urlsafe"])
def test_base64_inside_a_longer_base64_text_is_masked(
    redactor: Redactor, before: bytes, alphabet: str
) -> None:
    """Any of the 3 offsets the secret's bytes can have in the encoded stream."""
    altchars = None if alphabet == "standard" else b"-_"
    blob = base64.b64encode(b"header-bytes" + before + CANARY.encode() + b"-the-rest\n", altchars)
    assert secret_bytes_in(blob.decode(), altchars)
    scrubbed = redactor.scrub(blob.decode())
    assert "***" in scrubbed
    # What is left around the mask does not decode to the secret, at any offset.
    assert not any(secret_bytes_in(piece, altchars) for piece in scrubbed.split("***"))


def test_the_forms_of_a_short_value_do_not_mask_ordinary_words() -> None:
    redactor = Redactor()
    redactor.add("pass")
    assert redactor.scrub("compass 70617373 passport") == "com*** *** ***port"
    assert redactor.scrub("a pas de deux") == "a pas de deux"


# --- split across lines ------------------------------------------------------------------


def test_a_secret_split_over_two_lines_is_masked_on_both(redactor: Redactor) -> None:
    assert stream(redactor, ["token: " + CANARY[:9], CANARY[9:] + " (end)", "next"]) == [
        "token: ***",
        "*** (end)",
        "next",
    ]


def test_a_secret_one_character_per_line_is_masked_on_every_line(redactor: Redactor) -> None:
    lines = ["before", *CANARY, "after"]
    assert stream(redactor, lines) == ["before", *["***"] * len(CANARY), "after"]


def test_a_base64_wrapped_over_lines_is_masked() -> None:
    """``base64`` wraps at 76 columns: a long secret's encoding spans two lines."""
    secret = "wrapped-secret-" + "k" * 60
    redactor = Redactor()
    redactor.add(secret)
    encoded = base64.b64encode(secret.encode()).decode()
    lines = [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
    assert len(lines) == 2
    out = stream(redactor, lines)
    assert out == ["***", "***"]


def test_a_line_cut_at_64_kib_does_not_hide_the_secret(redactor: Redactor) -> None:
    """A runner cuts a long line into pieces; the secret straddles the cut."""
    line = "x" * (64 * 1024 - 10) + CANARY + "y" * 100
    pieces = [line[: 64 * 1024], line[64 * 1024 :]]
    out = stream(redactor, pieces)
    assert CANARY[:10] not in out[0] and out[0].endswith("x***")
    assert out[1].startswith("***y")


def test_lines_that_only_look_like_a_start_are_shipped_unchanged(redactor: Redactor) -> None:
    lines = ["a line ending in c", "Anary is a bird", "cAn", "not it"]
    assert stream(redactor, lines) == lines


def test_a_line_is_held_only_while_it_could_start_a_secret(redactor: Redactor) -> None:
    out: list[str] = []
    window = redactor.window(out.append)
    window.feed("plain line.")
    assert out == ["plain line."] and window.holding == 0
    window.feed("maybe " + CANARY[:5])
    assert window.holding == 1 and len(out) == 1
    window.feed(" no.")
    assert window.holding == 0 and out[1:] == ["maybe " + CANARY[:5], " no."]


@pytest.mark.anyio
async def test_a_held_line_goes_out_when_its_hold_expires(redactor: Redactor) -> None:
    """The rest never comes: the line is shipped after ``hold``, its secret start masked;
    the rest of the secret, arriving late, is still masked."""
    out: list[str] = []
    window = redactor.window(out.append, hold=HOLD_SECONDS)
    async with anyio.create_task_group() as tg:
        tg.start_soon(window.run)
        window.feed("slow " + CANARY[:12])
        started = time.monotonic()
        with anyio.fail_after(10):
            while not out:
                await anyio.sleep(0.005)
        assert time.monotonic() - started >= HOLD_SECONDS
        assert out == ["slow ***"]
        window.feed(CANARY[12:] + " done")
        window.close()
    assert out == ["slow ***", "*** done"]


def test_a_short_start_shipped_on_expiry_shows_under_min_fragment_characters(
    redactor: Redactor,
) -> None:
    out: list[str] = []
    window = redactor.window(out.append)
    window.feed("x " + CANARY[:3])
    window.release()  # what run() does when the hold expired
    window.feed(CANARY[3:])
    window.close()
    assert out == ["x " + CANARY[:3], "***"]
    assert len(CANARY[:3]) < MIN_FRAGMENT


# --- cuts --------------------------------------------------------------------------------


def test_a_secret_cut_by_a_300_character_shortening_is_masked(redactor: Redactor) -> None:
    """What a runner's failure reason does with the last lines: ``line[:300] + "..."``."""
    line = "E" * (300 - len(CANARY) + 1) + CANARY  # all but the last character fit
    reason = "exit code 1; last lines of output:\n" + line[:300] + "...\nbye"
    scrubbed = redactor.scrub(reason)
    assert CANARY[:-1] not in scrubbed and CANARY[:MIN_FRAGMENT] not in scrubbed
    assert scrubbed.endswith("E***...\nbye")


def test_a_secret_split_over_the_lines_of_a_reason_is_masked(redactor: Redactor) -> None:
    reason = f"exit code 2; last lines of output:\nkey={CANARY[:11]}\n{CANARY[11:]}"
    assert redactor.scrub(reason) == "exit code 2; last lines of output:\nkey=***\n***"


def test_the_end_of_a_whole_text_is_not_a_cut(redactor: Redactor) -> None:
    assert redactor.scrub("the bird is called cAnary") == "the bird is called cAnary"


def test_scrub_obj_masks_cut_record_fields(redactor: Redactor) -> None:
    record = {"result": {"reason": "failed: " + CANARY[:-2] + "..."}}
    assert redactor.scrub_obj(record) == {"result": {"reason": "failed: ***..."}}


def test_very_long_secrets_compile() -> None:
    """The matcher nests only where forms branch: a 20 KB secret (hex: 40 KB) is fine."""
    secret = "".join(chr(33 + (i * 7) % 90) for i in range(20_000))
    redactor = Redactor()
    redactor.add(secret)
    assert redactor.scrub(f"<{secret.encode().hex()}>") == "<***>"
    assert stream(redactor, [secret[:5000], secret[5000:]]) == ["***", "***"]


def test_a_secret_quoted_and_cut_by_an_error_message_is_masked() -> None:
    """``show_value(value, limit=40)``, as config errors quote a value: ``'abc...'...``."""
    from launchplane.core.errors import GIVEN_LIMIT, show_value

    secret = "tok-" + "Zq81x" * 10
    redactor = Redactor()
    redactor.add(secret)
    message = f"Input should be a valid integer (got {show_value(secret, limit=GIVEN_LIMIT)})"
    assert secret[:20] in message
    assert redactor.scrub(message) == "Input should be a valid integer (got '***'...)"
