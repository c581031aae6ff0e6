"""The one S3 transfer helper: kaniko's build contexts, SageMaker's inputs, the artifact store.

Every S3 transfer of launchplane goes through here so that multipart
uploads, progress lines and error messages are the same everywhere. The
functions are synchronous (boto3 is): call them from a worker thread
(``anyio.to_thread.run_sync``), never on the event loop. They take a client
made by :func:`launchplane.core.aws.client`, so the caller's ``AwsOptions``
(region, endpoint, profile) apply.

Large files (at or above ``multipart_threshold``) go up in parts, several at
once, through boto3's transfer manager; for those, ``progress`` receives a
line each time another tenth of the file has moved, and a last line when it
is done, so a build or job log shows a long upload advancing. Failures are
:class:`S3Error` naming the object (``s3://bucket/key``) and AWS's error
code and message, never the object's contents.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launchplane.core.aws import error_code, explain
from launchplane.core.interfaces import PluginError

MiB = 1024 * 1024
MULTIPART_THRESHOLD = 64 * MiB
"""Files of this size or more are uploaded (and downloaded) in parts, with progress lines."""
MULTIPART_CHUNK = 16 * MiB
"""The part size; S3 requires at least 5 MiB for every part but the last."""
MAX_CONCURRENCY = 8
"""Parts in flight at once."""
PROGRESS_STEPS = 10
"""A large transfer reports progress at each tenth."""

ProgressLine = Callable[[str], None]
"""Receives one human-readable line (``s3://b/k: uploaded 32.0 of 64.0 MiB (50%)``)."""


class S3Error(PluginError):
    """An S3 transfer failed; the message names the object and the failure."""


@dataclass(frozen=True)
class S3Uri:
    """``s3://bucket/key``, split; ``key`` may be empty (a bucket) or end in ``/`` (a prefix)."""

    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def join(self, name: str) -> S3Uri:
        """The object ``name`` under this prefix (one ``/`` between them)."""
        prefix = self.key.rstrip("/")
        return S3Uri(self.bucket, f"{prefix}/{name.lstrip('/')}" if prefix else name.lstrip("/"))


def parse_s3_uri(uri: str) -> S3Uri:
    """``s3://bucket/key`` -> :class:`S3Uri`; a ``ValueError`` that says what is wrong otherwise.

    Only the ``s3://`` form is accepted (not ``https://`` virtual-host
    addresses), since that is what configs and W&B's
    ``build-context-store`` hold.
    """
    if not uri.startswith("s3://"):
        raise ValueError(f"{uri!r} is not an S3 URI; write s3://BUCKET/KEY")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket; write s3://BUCKET/KEY")
    if not _valid_bucket(bucket):
        raise ValueError(
            f"{uri!r}: {bucket!r} is not a valid bucket name "
            "(3-63 characters: lowercase letters, digits, '.', '-')"
        )
    return S3Uri(bucket, key)


def upload_file(
    client: Any,
    path: Path | str,
    bucket: str,
    key: str,
    progress: ProgressLine | None = None,
    *,
    content_type: str | None = None,
    multipart_threshold: int = MULTIPART_THRESHOLD,
    multipart_chunk: int = MULTIPART_CHUNK,
) -> None:
    """Upload the file at ``path`` to ``s3://bucket/key`` (multipart at or above the threshold).

    ``progress`` receives progress lines for a file of at least
    ``multipart_threshold`` bytes; a small file is one request and reports
    nothing.
    """
    path = Path(path)
    where = S3Uri(bucket, key)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise S3Error(f"cannot upload {path} to {where}: {exc.strerror or exc}") from None
    callback = _Progress(where, "uploaded", size, progress) if size >= multipart_threshold else None
    extra = {"ContentType": content_type} if content_type else None
    try:
        client.upload_file(
            str(path),
            bucket,
            key,
            ExtraArgs=extra,
            Callback=callback,
            Config=_transfer_config(multipart_threshold, multipart_chunk),
        )
    except Exception as exc:
        raise S3Error(f"cannot upload {path} to {where}: {_explain(exc)}") from None
    if callback is not None:
        callback.done()


def upload_bytes(
    client: Any, data: bytes, bucket: str, key: str, *, content_type: str | None = None
) -> None:
    """Put ``data`` at ``s3://bucket/key`` in one request (small objects: manifests, tarballs)."""
    extra = {"ContentType": content_type} if content_type else {}
    try:
        client.put_object(Bucket=bucket, Key=key, Body=data, **extra)
    except Exception as exc:
        raise S3Error(f"cannot upload to {S3Uri(bucket, key)}: {_explain(exc)}") from None


def download_file(
    client: Any,
    bucket: str,
    key: str,
    path: Path | str,
    progress: ProgressLine | None = None,
    *,
    multipart_threshold: int = MULTIPART_THRESHOLD,
    multipart_chunk: int = MULTIPART_CHUNK,
) -> None:
    """Download ``s3://bucket/key`` to ``path`` (its directory must exist); ranged parts when large.

    A missing object is an :class:`S3Error` that says so. ``path`` is
    written only once the whole object has arrived (boto3 downloads to a
    temporary name and renames).
    """
    where = S3Uri(bucket, key)
    callback = None
    if progress is not None:
        try:
            size = int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        except Exception as exc:
            raise S3Error(f"cannot download {where}: {_explain(exc)}") from None
        if size >= multipart_threshold:
            callback = _Progress(where, "downloaded", size, progress)
    try:
        client.download_file(
            bucket,
            key,
            str(path),
            Callback=callback,
            Config=_transfer_config(multipart_threshold, multipart_chunk),
        )
    except Exception as exc:
        raise S3Error(f"cannot download {where}: {_explain(exc)}") from None
    if callback is not None:
        callback.done()


def exists(client: Any, bucket: str, key: str) -> bool:
    """Whether ``s3://bucket/key`` exists; other failures (no access) raise :class:`S3Error`.

    A HEAD request reports a missing key and a missing bucket alike as 404;
    both are "does not exist" here.
    """
    try:
        client.head_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if error_code(exc) in {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}:
            return False
        raise S3Error(f"cannot check {S3Uri(bucket, key)}: {_explain(exc)}") from None
    return True


class _Progress:
    """boto3's transfer ``Callback``: byte counts (from several threads) -> a line per tenth."""

    def __init__(self, where: S3Uri, verb: str, size: int, emit: ProgressLine | None) -> None:
        self._where = where
        self._verb = verb
        self._size = size
        self._emit = emit
        self._seen = 0
        self._step = 0
        self._lock = threading.Lock()

    def __call__(self, amount: int) -> None:
        if self._emit is None:
            return
        with self._lock:
            self._seen += amount
            step = min(PROGRESS_STEPS, self._seen * PROGRESS_STEPS // max(self._size, 1))
            if step <= self._step or step == PROGRESS_STEPS:  # the last line comes from done()
                return
            self._step = step
            line = self._line(self._seen)
        self._emit(line)

    def done(self) -> None:
        """The final line, once the transfer has returned (so 100% means it is complete)."""
        if self._emit is not None:
            self._emit(self._line(self._size) + ", done")

    def _line(self, seen: int) -> str:
        percent = seen * 100 // max(self._size, 1)
        return (
            f"{self._where}: {self._verb} {seen / MiB:.1f} of {self._size / MiB:.1f} MiB "
            f"({percent}%)"
        )


def _transfer_config(threshold: int, chunk: int) -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=threshold,
        multipart_chunksize=chunk,
        max_concurrency=MAX_CONCURRENCY,
    )


def _explain(exc: BaseException) -> str:
    """AWS's words for a failure; a HEAD's bodiless 404 as "no such object".

    boto3's transfer manager wraps the ClientError (``S3UploadFailedError``),
    so the wrapped one is read when there is one.
    """
    cause = exc.__cause__ or exc.__context__
    if getattr(exc, "response", None) is None and getattr(cause, "response", None) is not None:
        exc = cause
    if error_code(exc) == "404":
        return "no such object (404)"
    return explain(exc)


def _valid_bucket(name: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789.-")
    return 3 <= len(name) <= 63 and set(name) <= allowed and name[0] not in ".-"
