"""The S3 transfer helper against moto's server with real boto3 (multipart, progress, errors)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from launchplane.core import aws
from launchplane.core.s3 import (
    MiB,
    S3Error,
    S3Uri,
    download_file,
    exists,
    parse_s3_uri,
    upload_bytes,
    upload_file,
)

pytestmark = pytest.mark.aws


@pytest.fixture
def s3(aws_env: dict[str, str]) -> Any:
    """A real boto3 S3 client made by the shared helper; moto is reached via AWS_ENDPOINT_URL."""
    return aws.client("s3", aws.AwsOptions(region="us-east-1"), kind="test", name="s3")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"lp-test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def test_large_file_goes_up_in_parts_with_progress_lines(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    data = os.urandom(12 * MiB + 123)
    source = tmp_path / "context.tar.gz"
    source.write_bytes(data)
    lines: list[str] = []
    upload_file(
        s3, source, bucket, "ctx/a.tar.gz", lines.append,
        multipart_threshold=5 * MiB, multipart_chunk=5 * MiB,
    )  # fmt: skip

    head = s3.head_object(Bucket=bucket, Key="ctx/a.tar.gz")
    assert head["ETag"].strip('"').endswith("-3")  # S3's mark of a 3-part multipart upload
    assert head["ContentLength"] == len(data)
    assert len(lines) >= 3, lines
    assert all(line.startswith(f"s3://{bucket}/ctx/a.tar.gz: uploaded ") for line in lines)
    percents = [int(line.split("(")[1].split("%")[0]) for line in lines]
    assert percents == sorted(percents) and len(set(percents)) == len(percents)
    assert lines[-1].endswith("12.0 of 12.0 MiB (100%), done")

    back = tmp_path / "back.tar.gz"
    got: list[str] = []
    download_file(
        s3, bucket, "ctx/a.tar.gz", back, got.append,
        multipart_threshold=5 * MiB, multipart_chunk=5 * MiB,
    )  # fmt: skip
    assert back.read_bytes() == data
    assert got[-1] == f"s3://{bucket}/ctx/a.tar.gz: downloaded 12.0 of 12.0 MiB (100%), done"


def test_small_file_is_one_request_and_reports_nothing(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    source = tmp_path / "small.txt"
    source.write_text("hello")
    lines: list[str] = []
    upload_file(s3, source, bucket, "small.txt", lines.append, content_type="text/plain")
    head = s3.head_object(Bucket=bucket, Key="small.txt")
    assert "-" not in head["ETag"] and head["ContentType"] == "text/plain"
    assert lines == []


def test_upload_bytes_and_exists(s3: Any, bucket: str, tmp_path: Path) -> None:
    assert not exists(s3, bucket, "manifest.json")
    upload_bytes(s3, b'{"a": 1}', bucket, "manifest.json", content_type="application/json")
    assert exists(s3, bucket, "manifest.json")
    assert s3.get_object(Bucket=bucket, Key="manifest.json")["Body"].read() == b'{"a": 1}'
    assert not exists(s3, f"lp-missing-{uuid.uuid4().hex[:8]}", "manifest.json")


def test_failures_name_the_object_and_the_error(s3: Any, bucket: str, tmp_path: Path) -> None:
    missing = f"lp-missing-{uuid.uuid4().hex[:8]}"
    source = tmp_path / "f.bin"
    source.write_bytes(b"x" * 10)
    no_bucket = rf"^cannot upload .*f\.bin to s3://{missing}/k: NoSuchBucket"
    with pytest.raises(S3Error, match=no_bucket):
        upload_file(s3, source, missing, "k")
    with pytest.raises(S3Error, match=rf"^cannot upload to s3://{missing}/k: NoSuchBucket"):
        upload_bytes(s3, b"data", missing, "k")
    no_object = rf"^cannot download s3://{bucket}/nope: no such object \(404\)$"
    with pytest.raises(S3Error, match=no_object):
        download_file(s3, bucket, "nope", tmp_path / "nope")
    with pytest.raises(S3Error, match=rf"^cannot upload .*absent to s3://{bucket}/k: No such file"):
        upload_file(s3, tmp_path / "absent", bucket, "k")
    assert not (tmp_path / "nope").exists()


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/a/b.tar.gz", S3Uri("bucket", "a/b.tar.gz")),
        ("s3://bucket", S3Uri("bucket", "")),
        ("s3://my.bucket-1/prefix/", S3Uri("my.bucket-1", "prefix/")),
    ],
)
def test_parse_s3_uri(uri: str, expected: S3Uri) -> None:
    assert parse_s3_uri(uri) == expected


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("https://bucket.s3.amazonaws.com/k", "is not an S3 URI; write s3://BUCKET/KEY"),
        ("s3:///key", "names no bucket"),
        ("s3://Bad_Bucket/key", "'Bad_Bucket' is not a valid bucket name"),
    ],
)
def test_parse_s3_uri_refuses(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_s3_uri(uri)


def test_join_puts_one_slash_between() -> None:
    assert str(S3Uri("b", "prefix/").join("ctx.tgz")) == "s3://b/prefix/ctx.tgz"
    assert str(S3Uri("b", "").join("/ctx.tgz")) == "s3://b/ctx.tgz"
