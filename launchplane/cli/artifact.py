"""``launchplane artifact fetch``: one pinned artifact version from its store into a folder.

What a Kubernetes pod's init container runs (the runner's
``artifact_fetcher_image``) to put an input artifact of an ``s3`` store into the
pod: it lists the version's prefix (``s3://bucket/prefix/name/versions/v3/``,
the store's ``version_uri``), downloads every object under it into ``DEST``
with their paths below the prefix, and checks the content digest
(:mod:`launchplane.core.content_digest`, the stores' own) against ``--digest``,
the one the agent pinned in the run record. On a mismatch the downloaded files
are removed and the command exits 1, so the job never starts on other bytes.

Credentials are boto3's own chain where the command runs (in a pod: IRSA's web
identity, the node's role, or variables from a Secret): the agent passes none.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

import click

from launchplane.cli._output import fail
from launchplane.core import aws, s3
from launchplane.core.content_digest import FileEntry, content_digest, sha256_file
from launchplane.core.interfaces import PluginError


@click.group("artifact")
def artifact() -> None:
    """Artifact versions outside the agent (a pod's init container)."""


@artifact.command("fetch")
@click.argument("uri")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--digest",
    required=True,
    metavar="sha256:HEX",
    help="The pinned content digest; the files are removed and the command fails unless equal.",
)
@click.option("--region", help="AWS region [default: boto3's chain].")
@click.option(
    "--endpoint-url", help="S3 endpoint (MinIO, a VPC endpoint) [default: $AWS_ENDPOINT_URL]."
)
def fetch(uri: str, dest: Path, digest: str, region: str | None, endpoint_url: str | None) -> None:
    """Download the files under URI (s3://bucket/prefix/) into DEST and verify their digest."""
    try:
        where = s3.parse_s3_uri(uri)
    except ValueError as exc:
        fail(str(exc))
    prefix = where.key if not where.key or where.key.endswith("/") else where.key + "/"
    try:
        client = aws.client(
            "s3",
            aws.AwsOptions(region=region, endpoint_url=endpoint_url),
            kind="command",
            name="artifact fetch",
        )
        written, size = _download(client, where.bucket, prefix, dest)
    except PluginError as exc:
        fail(str(exc))
    entries = [FileEntry(name, sha256_file(dest / name), n) for name, n in written]
    actual = content_digest(entries)
    if actual != digest:
        for name, _ in written:
            (dest / name).unlink(missing_ok=True)
        fail(
            f"{uri}: content digest {actual} differs from the pinned {digest}; the stored "
            "version was changed or damaged (the downloaded files were removed)"
        )
    click.echo(f"fetched {len(written)} files ({size} bytes) from {uri} into {dest}: {digest}")


def _download(
    client: Any, bucket: str, prefix: str, dest: Path
) -> tuple[list[tuple[str, int]], int]:
    """Every object under ``prefix`` into ``dest``: ``[(relative path, size)]`` and the total."""
    written: list[tuple[str, int]] = []
    pages = client.get_paginator("list_objects_v2")
    try:
        listed = [
            item
            for page in pages.paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]
    except Exception as exc:
        raise s3.S3Error(f"cannot list {s3.S3Uri(bucket, prefix)}: {aws.explain(exc)}") from None
    for item in listed:
        name = item["Key"][len(prefix) :]
        if not name or name.endswith("/"):
            continue  # a folder marker
        parts = PurePosixPath(name).parts
        if name.startswith("/") or ".." in parts:
            raise PluginError(f"{s3.S3Uri(bucket, item['Key'])}: a key that leaves {dest}")
        target = dest.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(client, bucket, item["Key"], target)
        written.append((name, os.path.getsize(target)))
    if not written:
        raise PluginError(f"no files under {s3.S3Uri(bucket, prefix)}")
    return written, sum(n for _, n in written)
