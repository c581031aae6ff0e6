"""Amazon ECR login for the docker builder: ``ecr:GetAuthorizationToken`` -> push credentials.

ECR has no long-lived registry password: a caller with AWS credentials asks
``GetAuthorizationToken`` for a token (valid 12 hours) that decodes to
``AWS:<password>``, and hands that to the engine as the push's
``auth_config``. Nothing is written to ``~/.docker/config.json`` and no
``docker login`` runs, so the agent host needs no credential helper.

The builder logs in when ``builder.options.registry`` is an ECR registry
(``<account>.dkr.ecr.<region>.amazonaws.com[/prefix]``; the account and
region are read from the name) or when ``builder.options.ecr`` is set
(:class:`EcrOptions`: the AWS options of the call, for a VPC endpoint, a
pull-through name or a test registry). The token is kept until five minutes
before it expires and is never logged.
"""

from __future__ import annotations

import base64
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from launchplane.core import aws
from launchplane.core.interfaces import PluginError

ECR_HOST = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$"
)
RENEW_BEFORE = timedelta(minutes=5)
"""A token this close to its expiry is renewed before a push rather than used."""


class EcrOptions(aws.AwsOptions):
    """``builder.options.ecr``: log in to ECR for this registry (region, endpoint, profile).

    ``region`` defaults to the one in an ECR registry's name, then the AWS chain.
    """

    registry_id: str | None = None
    """The account whose registry to log in to; default: the one in the registry's name, else
    the caller's own."""
    create_repositories: bool = False
    """Create a missing repository before the push (needs ``ecr:CreateRepository``); ECR
    refuses pushes to repositories that do not exist."""


@dataclass(frozen=True)
class Credentials:
    """What the engine pushes with; ``password`` is a secret (never shown)."""

    username: str
    password: str
    server: str
    expires: datetime

    def auth_config(self) -> dict[str, str]:
        """docker-py's ``auth_config`` for ``push``/``get_registry_data``."""
        return {"username": self.username, "password": self.password, "serveraddress": self.server}

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, server={self.server!r}, password=***)"


def ecr_host(registry: str) -> re.Match[str] | None:
    """The match of an ECR registry's host (groups ``account``, ``region``), else None."""
    return ECR_HOST.match(registry.split("/", 1)[0])


class EcrLogin:
    """One builder's ECR login for ``registry``: a token, renewed when it nears its expiry.

    Methods make AWS calls: run them in a worker thread.
    """

    def __init__(self, registry: str, options: EcrOptions | None) -> None:
        found = ecr_host(registry)
        self.registry = registry
        self.host = registry.split("/", 1)[0]
        self.options = options or EcrOptions()
        region = self.options.region or (found["region"] if found else None)
        self._aws = self.options.model_copy(update={"region": region})
        self._registry_id = self.options.registry_id or (found["account"] if found else None)
        self._client: Any = None
        self._credentials: Credentials | None = None
        self._lock = threading.RLock()

    def credentials(self) -> tuple[Credentials, bool]:
        """Valid credentials, and whether they were fetched now (False: the kept ones)."""
        with self._lock:
            now = datetime.now(UTC)
            kept = self._credentials
            if kept is not None and kept.expires - RENEW_BEFORE > now:
                return kept, False
            self._credentials = self._fetch()
            return self._credentials, True

    def ensure_repository(self, repository: str) -> bool:
        """With ``create_repositories``, create ``repository`` if missing; True if created."""
        if not self.options.create_repositories:
            return False
        name = repository.split("/", 1)[1] if "/" in repository else repository
        kwargs = {"registryId": self._registry_id} if self._registry_id else {}
        try:
            self._ecr().create_repository(repositoryName=name, **kwargs)
        except Exception as exc:
            if aws.error_code(exc) == "RepositoryAlreadyExistsException":
                return False
            raise PluginError(
                f"cannot create ECR repository '{name}' ({self.where}): {aws.explain(exc)}; the "
                "agent's AWS identity needs ecr:CreateRepository, or create it beforehand"
            ) from None
        return True

    @property
    def where(self) -> str:
        region = self._ecr().meta.region_name
        account = f"registry {self._registry_id}, " if self._registry_id else ""
        return f"{account}region {region}"

    def _fetch(self) -> Credentials:
        kwargs = {"registryIds": [self._registry_id]} if self._registry_id else {}
        try:
            answer = self._ecr().get_authorization_token(**kwargs)
            data = answer["authorizationData"][0]
            token = base64.b64decode(data["authorizationToken"]).decode()
            username, _, password = token.partition(":")
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(
                f"ECR login for {self.registry} failed ({self.where}): {aws.explain(exc)}; the "
                "agent's AWS identity needs ecr:GetAuthorizationToken (and push rights on the "
                "repository)"
            ) from None
        if not password:
            raise PluginError(f"ECR login for {self.registry}: the token is not USER:PASSWORD")
        expires = data.get("expiresAt")
        if not isinstance(expires, datetime):
            expires = datetime.now(UTC)  # unknown: use it for this push only
        return Credentials(username, password, self.host, expires)

    def _ecr(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = aws.client("ecr", self._aws, kind="builder", name="docker")
            return self._client
