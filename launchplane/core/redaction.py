"""One redactor per process: every secret value, and its common encodings, becomes ``***``.

The agent registers each resolved secret value here before anyone else sees
it, so logs, run records, API responses and error messages can be scrubbed.
Redaction is for accidental leaks; a job that holds a secret can always send
it out on purpose (docs/security.md, "Redaction", says what is and is not
promised).

What counts as the secret (:func:`_encoded_forms`): the value itself; hex
(lower and upper case); base64 and urlsafe base64, on its own (padded or not)
and *inside a longer base64 text* (the part of the encoding that is the same
whatever bytes come before and after it, for each of the three alignments);
URL encodings with upper- or lower-case escapes; JSON string escaping; each
line of a multi-line value, and the value with its line breaks removed.

Where the secret may be, beyond one string:

* **split over consecutive lines** of one stream (``print(s[:9]); print(s[9:])``,
  one character per line, a 76-column base64 wrap, a 64 KiB line cut in two):
  a :class:`LineWindow` matches the lines as one text, and masks the part of
  the secret on each line. A line whose end could be the start of a secret is
  held back until the next line shows whether it is, at most
  :data:`HOLD_SECONDS` (and :data:`MAX_HELD_LINES` lines); no other line waits;
* **cut off**: a text cut short (``line[:300] + "..."``), a stream's line
  shipped when its hold expired, or the last line of a stream that ended, may
  end in the first part of a secret. At such a cut - right before
  ``...``/``…``, or at the end of such a line - a trailing start of a secret
  of at least :data:`MIN_FRAGMENT` characters is masked, so at most
  ``MIN_FRAGMENT - 1`` characters of it can show. The end of a whole text
  (:meth:`Redactor.scrub`) is not a cut: its last word may just look like the
  start of a secret.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

import anyio

MASK = "***"
MIN_SECRET_LENGTH = 4
"""Shorter values are not redacted: scrubbing every "abc" or "1" would mangle all output."""
MIN_FRAGMENT = 4
"""At a cut (before ``...``, a held line shipped without its continuation), a secret's start of
this many characters or more is masked: fewer may show. Shorter starts are left alone: every
line ending in a secret's first letter would lose it."""
HOLD_SECONDS = 0.05
"""The longest a :class:`LineWindow` holds a line back to see whether the next one completes a
secret. Lines a job writes in one go arrive together and never wait for this."""
MAX_HELD_LINES = 1024
"""The most lines a :class:`LineWindow` holds (empty lines between the parts of a secret)."""
_HEAD = 8
"""Forms longer than this are also found by their first ``_HEAD`` characters (see ``_Matcher``)."""
_CUT_MARKERS = ("...", "\u2026")
"""What code that shortens a text appends where it cut it (``line[:300] + "..."``)."""
_LINE_BREAK = re.compile(r"(\r?\n)")

Span = tuple[int, int]


class Redactor:
    """Replaces every registered secret value, and its common encodings, with ``***``.

    One process holds one redactor, shared by all jobs and tasks: values are
    only ever added, and the compiled matcher is swapped atomically, so
    :meth:`scrub` and the :class:`LineWindow` streams need no lock.
    """

    def __init__(self) -> None:
        self._forms: set[str] = set()
        self._matcher: _Matcher | None = None
        self._lock = threading.Lock()

    def add(self, value: str) -> bool:
        """Register a value; False (and nothing registered) when it is too short to redact."""
        if len(value) < MIN_SECRET_LENGTH:
            return False
        forms = {form for form in _encoded_forms(value) if len(form) >= MIN_SECRET_LENGTH}
        with self._lock:
            if not forms <= self._forms:
                self._forms |= forms
                self._matcher = _Matcher.of(self._forms)
        return True

    def scrub(self, text: str) -> str:
        """``text`` with every form of every secret masked, also across its line breaks.

        A secret split over lines of ``text`` is masked on each of them, and each
        ``...`` in it counts as a cut (see the module); its end does not.
        """
        matcher = self._matcher
        if matcher is None or not text:
            return text
        if "\n" not in text:
            return matcher.scrub_line(text)
        # Forms with line breaks in them (a PEM key printed whole) first; then the lines.
        pieces = _LINE_BREAK.split(_Held(text, matcher.scan(text)[0]).masked())
        out: list[str] = []
        window = LineWindow(self, out.append)
        for line in pieces[::2]:
            window.feed(line)
        window.close(cut=False)
        pieces[::2] = out
        return "".join(pieces)

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

    def window(self, ship: Callable[[str], None], hold: float = HOLD_SECONDS) -> LineWindow:
        """A :class:`LineWindow` for one stream, handing each scrubbed line in order to ``ship``."""
        return LineWindow(self, ship, hold)


@dataclass(slots=True)
class _Held:
    """A line, and the parts of it found to be secret."""

    text: str
    masks: list[Span] = field(default_factory=list)

    def masked(self) -> str:
        """The text with each secret part (overlapping or touching parts merged) as ``***``."""
        if not self.masks:
            return self.text
        out: list[str] = []
        done = -1
        for start, end in sorted(self.masks):
            if start > done:
                out += [self.text[max(done, 0) : start], MASK]
            done = max(done, end)
        out.append(self.text[done:])
        return "".join(out)


class LineWindow:
    """The lines of one stream (a job's output) scrubbed as one text: a secret split over
    consecutive lines is masked on each of them.

    :meth:`feed` hands a line to ``ship`` at once, scrubbed, unless its end
    could be the start of a secret (some form of a secret begins with its last
    characters). Such a line is held until the next lines show whether the
    secret follows - every line is shipped once, in order, with the parts of a
    secret on it masked - but no longer than ``hold`` seconds after it came
    (:meth:`run` ships it then) and no more than :data:`MAX_HELD_LINES` lines.
    A line shipped because its hold expired is a cut (see the module), and its
    end is remembered: the rest of the secret on later lines is still masked.
    :meth:`close` ships what is held: the end of the stream is a cut too.

    The cost of a line that is not held: one regex pass over it (the one a
    plain scrub makes) and one over its last ``_HEAD`` characters. Not
    thread-safe: one stream is fed by one task; all windows share the redactor.
    """

    def __init__(
        self, redactor: Redactor, ship: Callable[[str], None], hold: float = HOLD_SECONDS
    ) -> None:
        self._redactor = redactor
        self._ship = ship
        self._hold = hold
        self._context = ""
        """Shipped text that may be the start of a secret (its hold expired)."""
        self._held: list[_Held] = []
        self._scan_from = 0
        """Where, in context + held text, a secret not found yet may begin."""
        self._held_since = 0.0
        self._wake: anyio.Event | None = None
        self._closed = False

    @property
    def holding(self) -> int:
        """How many lines are held back."""
        return len(self._held)

    def feed(self, line: str) -> None:
        """Take the next line (without its line break): ship it, or hold it, or ship what it
        shows to be safe."""
        matcher = self._redactor._matcher
        if matcher is None:
            self._ship(line)
            return
        if self._closed:
            self._ship(self._redactor.scrub(line))
            return
        if not self._held and not self._context:
            if matcher.clean(line):  # the common case, in two C-speed passes
                self._ship(line)
                return
            spans, open_at = matcher.scan(line)
            if open_at is None:  # the common case: nothing to wait for
                spans += matcher.cut_spans(line, 0)
                self._ship(_Held(line, spans).masked() if spans else line)
                return
        if not self._held:
            self._held_since = time.monotonic()
            if self._wake is not None:
                self._wake.set()
        self._held.append(_Held(line))
        full = len(self._held) > MAX_HELD_LINES
        self._scan(matcher, expired=full, cut=full)

    def release(self, cut: bool = True) -> None:
        """Ship every held line now; ``cut``: mask a secret's start at the end (see the module)."""
        matcher = self._redactor._matcher
        if self._held and matcher is not None:
            self._scan(matcher, expired=True, cut=cut)

    def close(self, cut: bool = True) -> None:
        """The stream ended: ship what is held; later lines are scrubbed one by one.

        ``cut``: the end is a cut (a stream that stopped, maybe mid-secret); not
        for a whole text, whose last word may just look like a secret's start.
        """
        self.release(cut)
        self._context = ""
        self._closed = True
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """Ship held lines when their hold expires; returns once :meth:`close` was called."""
        while not self._closed:
            self._wake = anyio.Event()
            if not self._held:
                await self._wake.wait()
                continue
            delay = self._held_since + self._hold - time.monotonic()
            if delay > 0:
                with anyio.move_on_after(delay):
                    await self._wake.wait()  # close(), or a hold that began since
                continue
            self.release()

    def _scan(self, matcher: _Matcher, *, expired: bool, cut: bool = False) -> None:
        """Find the secrets in context + held lines; ship the lines no secret can reach
        (``expired``: all of them)."""
        held = self._held
        context = self._context
        text = context + "".join(line.text for line in held)
        ends: list[int] = []
        offset = len(context)
        for line in held:
            offset += len(line.text)
            ends.append(offset)
        spans, open_at = matcher.scan(text, self._scan_from)
        spans += matcher.cut_spans(text, self._scan_from)
        if cut and open_at is not None and len(text) - open_at >= MIN_FRAGMENT:
            spans.append((open_at, len(text)))
        for start, end in spans:
            if end > len(context):
                _mask(held, ends, max(start, len(context)), end)
        ship = len(held)
        if open_at is not None and not expired:
            ship = sum(1 for end in ends if end <= open_at)
        for line in held[:ship]:
            self._ship(line.masked())
        del held[:ship]
        if not held:
            # An expired hold keeps its open start, so that the rest of the secret is caught.
            self._context = text[open_at:] if expired and open_at is not None else ""
            self._scan_from = 0
        elif ship:
            self._context = ""
            self._scan_from = open_at - ends[ship - 1]  # type: ignore[operator]
        else:
            self._scan_from = open_at  # type: ignore[assignment]


def _mask(held: list[_Held], ends: list[int], start: int, end: int) -> None:
    """Mark ``[start, end)`` of the joined text as secret, on each held line it covers."""
    for line, line_end in zip(held, ends, strict=True):
        line_start = line_end - len(line.text)
        if line_end > start and line_start < end:
            line.masks.append(
                (max(start, line_start) - line_start, min(end, line_end) - line_start)
            )


@dataclass(frozen=True, slots=True)
class _Matcher:
    """The compiled forms of every secret: swapped whole when a secret is added.

    One regex pass over a text (:meth:`scan`) finds both the complete forms
    (longest first, as an alternation of them would) and where a form may
    begin and run past the end of the text: ``pattern`` is a trie of the forms
    in which what follows a form's first ``_HEAD`` characters is optional, so a
    match that is not a whole form is such a head, checked against the forms
    in ``heads``. Starts shorter than ``_HEAD`` are looked for in the last
    characters only (``short``). The regex nests only where forms branch,
    however long a secret is.
    """

    pattern: re.Pattern[str]
    short: re.Pattern[str]
    forms: frozenset[str]
    heads: dict[str, tuple[str, ...]]
    longest: int

    @classmethod
    def of(cls, forms: Iterable[str]) -> _Matcher:
        unique = frozenset(forms)
        heads: dict[str, list[str]] = {}
        for form in sorted(unique, key=len, reverse=True):
            if len(form) > _HEAD:
                heads.setdefault(form[:_HEAD], []).append(form)
        starts = _trie(form[: min(len(form) - 1, _HEAD - 1)] for form in unique)
        return cls(
            pattern=re.compile(
                _trie_regex(_trie(unique), lambda depth, end: end or depth == _HEAD)
            ),
            short=re.compile(rf"(?:{_trie_regex(starts, lambda depth, end: depth > 0)})\Z"),
            forms=unique,
            heads={head: tuple(group) for head, group in heads.items()},
            longest=max(map(len, unique)),
        )

    def scan(self, text: str, lo: int = 0, end: int | None = None) -> tuple[list[Span], int | None]:
        """The complete forms in ``text[lo:end]``, and where its longest tail that is the
        start (not all) of a form begins (None: no form can run on past ``end``)."""
        end = len(text) if end is None else end
        near = end - self.longest + 1
        spans: list[Span] = []
        open_at: int | None = None
        pos = lo
        while (match := self.pattern.search(text, pos, end)) is not None:
            start, stop = match.span()
            if match.group() in self.forms:
                spans.append((start, stop))
                pos = stop
                if start >= near and open_at is None:
                    # A form near the end: it, or a form overlapping it, may run on.
                    open_at = (
                        start
                        if self._opens(text, start, end)
                        else self._open_after(text, start + 1, end)
                    )
            else:  # a head only (or a form's start cut by ``end``)
                if open_at is None and start >= near and self._opens(text, start, end):
                    open_at = start
                pos = start + 1
        if open_at is None and (short := self.short.search(text, max(lo, end - _HEAD + 1), end)):
            open_at = short.start()
        return spans, open_at

    def clean(self, text: str) -> bool:
        """Nothing to mask in ``text`` and nothing to wait for: no form or head of one, no
        start of one at its end, no cut marker."""
        return (
            self.pattern.search(text) is None
            and self.short.search(text, max(0, len(text) - _HEAD + 1)) is None
            and "..." not in text
            and "\u2026" not in text
        )

    def _opens(self, text: str, start: int, end: int) -> bool:
        """``text[start:end]`` is the start of a longer form (when ``_HEAD`` characters or more)."""
        tail = text[start:end]
        forms = self.heads.get(tail[:_HEAD], ())
        return any(len(form) > len(tail) and form.startswith(tail) for form in forms)

    def _open_after(self, text: str, pos: int, end: int) -> int | None:
        """The first match from ``pos`` on that runs to ``end`` as the start of a longer form."""
        while (match := self.pattern.search(text, pos, end)) is not None:
            if self._opens(text, match.start(), end):
                return match.start()
            pos = match.start() + 1
        return None

    def scrub_line(self, text: str) -> str:
        """One line (no line break) with every form masked, and the starts of secrets before
        its cut markers."""
        spans = self.scan(text)[0] + self.cut_spans(text, 0)
        return _Held(text, spans).masked() if spans else text

    def cut_spans(self, text: str, lo: int) -> list[Span]:
        """The starts of secrets (``MIN_FRAGMENT`` or more characters) right before a cut marker
        (or before the closing quote of a quoted value cut short, ``'abc'...``)."""
        spans: list[Span] = []
        for marker in _CUT_MARKERS:
            at = text.find(marker, lo)
            while at != -1:
                cut = at - 1 if at > lo and text[at - 1] in "'\"" else at  # show_value's 'abc'...
                _, start = self.scan(text, max(lo, cut - self.longest + 1), cut)
                if start is not None and cut - start >= MIN_FRAGMENT:
                    spans.append((start, cut))
                at = text.find(marker, at + 1)
        return spans


_END = ""
"""The trie key that marks where a word ends."""


def _after_head(depth: int, ends: bool) -> bool:
    """In ``_Matcher.pattern``: the rest of a form is optional after its head, or where one ends."""
    return ends or depth == _HEAD


def _trie(words: Iterable[str]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[_END] = {}
    return root


def _trie_regex(root: dict[str, Any], optional: Callable[[int, bool], bool]) -> str:
    """The trie as a regex, longest match first; what follows a node is optional where
    ``optional(depth, a word ends there)`` says. Runs without a branch are plain literals,
    so only branches nest (and recurse here)."""

    def emit(node: dict[str, Any], depth: int) -> str:
        run = ""
        while True:
            children = sorted((char, child) for char, child in node.items() if char != _END)
            if len(children) != 1 or optional(depth, _END in node):
                break
            char, node = children[0]
            run += re.escape(char)
            depth += 1
        branches = [re.escape(char) + emit(child, depth + 1) for char, child in children]
        if not branches:
            return run
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return run + (f"(?:{body})?" if optional(depth, _END in node) else body)

    return emit(root, 0)


def _encoded_forms(value: str) -> Iterator[str]:
    """The value as it may show up in output: raw, hex, base64 (alone or inside a longer
    base64 text), URL-encoded (either case of escapes), JSON-escaped, per line."""
    yield value
    raw = value.encode()
    yield raw.hex()
    yield raw.hex().upper()
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode("ascii")
        yield text
        yield text.rstrip("=")
    for inner in _base64_inner(raw):
        yield inner
        yield inner.translate(_URLSAFE)
    for url in (quote(value), quote(value, safe=""), quote_plus(value)):
        yield url
        yield _ESCAPE.sub(lambda m: m.group().lower(), url)
    yield json.dumps(value)[1:-1]
    lines = value.splitlines()
    yield from (line.strip() for line in lines)
    if len(lines) > 1:
        yield "".join(lines)  # the window joins a stream's lines without their breaks


_URLSAFE = str.maketrans("+/", "-_")
_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def _base64_inner(raw: bytes) -> Iterator[str]:
    """For each of the 3 offsets ``raw`` can have in a longer base64 text: the characters of
    its encoding that depend on its bytes alone, whatever comes before and after.

    Character ``i`` of an encoding carries bits ``6i..6i+5`` of the input; with
    ``offset`` bytes before the value it is stable when those bits all lie in
    ``8*offset .. 8*(offset+len(raw))``.
    """
    for offset in range(3):
        encoded = base64.b64encode(bytes(offset) + raw + bytes(2)).decode("ascii")
        first = -(-8 * offset // 6)
        last = (8 * (offset + len(raw)) - 6) // 6
        yield encoded[first : last + 1]
