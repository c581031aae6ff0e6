"""One way to make boto3 clients for every AWS-facing plugin (SageMaker, Secrets Manager, S3, ECR).

Plugins embed :class:`AwsOptions` in their own options model, so a queue
(``secret_providers: {aws-sm: {region: eu-west-1}}``) or an agent config can
name a region, an endpoint (moto, LocalStack, a VPC endpoint) or a profile;
anything left out comes from the standard AWS configuration chain
(``AWS_REGION``/``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``,
instance roles). boto3 is imported inside :func:`client`, never at module
import time, and a missing extra is one clear line.

AWS errors are put in words by :func:`explain`: the error code and AWS's
message, which name resources, never values.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from launchplane.core.interfaces import MissingExtraError, PluginError


class AwsOptions(BaseModel):
    """Where a plugin's AWS calls go; every field falls back to the AWS configuration chain."""

    model_config = ConfigDict(extra="forbid")

    region: str | None = None
    """``us-east-1``; else ``AWS_REGION``/``AWS_DEFAULT_REGION`` or the profile's region."""
    endpoint_url: str | None = None
    """A non-AWS endpoint (moto's server, LocalStack, a VPC endpoint); else ``AWS_ENDPOINT_URL``."""
    profile: str | None = None
    """A profile of ``~/.aws/config``; else ``AWS_PROFILE`` or the default chain."""


def client(service: str, options: AwsOptions | None, *, kind: str, name: str) -> Any:
    """A boto3 client for ``service``, or :class:`MissingExtraError` naming ``kind`` ``name``.

    Clients are thread-safe; a plugin makes one per service and keeps it. The
    retry mode is boto3's ``standard`` (backoff on throttling and 5xx).
    """
    try:
        import boto3
        import botocore.config
        import botocore.exceptions
    except ImportError:
        raise MissingExtraError(kind, name, "aws") from None
    options = options or AwsOptions()
    try:
        session = boto3.session.Session(profile_name=options.profile, region_name=options.region)
        return session.client(
            service,
            endpoint_url=options.endpoint_url,
            config=botocore.config.Config(retries={"mode": "standard", "max_attempts": 5}),
        )
    except botocore.exceptions.BotoCoreError as exc:
        raise PluginError(f"{kind} '{name}': cannot make an AWS {service} client: {exc}") from None


def error_code(exc: BaseException) -> str | None:
    """The error code of a botocore ``ClientError`` (``ResourceNotFoundException``), else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def explain(exc: BaseException) -> str:
    """An AWS failure in words: ``<Code>: <AWS's message>``, or the exception's type and text.

    AWS's messages name resources (a secret's name, a bucket), never their
    contents, so this is safe to show; callers still run it through the redactor.
    """
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        err = response["Error"]
        code, message = err.get("Code", "Error"), err.get("Message", "")
        return f"{code}: {message}" if message else str(code)
    return f"{type(exc).__name__}: {exc}"
