"""A stand-in for the kaniko executor, plugged into k8skit's pod controller (``handle_image``).

No kaniko image can be pulled on these machines, so a pod whose image is the
builder's ``executor_image`` is not run as a container: this handler does what
the executor would, with the real Docker engine and the real registry:

- reads the pod's ``args`` as kaniko reads them (``--context``,
  ``--dockerfile``, ``--destination``, ``--label``, ``--digest-file``) and
  refuses flags it does not know, as kaniko does;
- gets the context from where kaniko would: ``tar://<path>`` from the
  ConfigMap volume mounted at that path (read from the emulator), or
  ``s3://bucket/key`` through boto3 at the pod's ``S3_ENDPOINT`` (moto);
- really builds it (``docker build`` of the tar.gz), streaming the build output
  as the pod's log, and pushes ``--destination`` to the registry (127.0.0.1:5000);
- ends with exit code 0 and the pushed digest as the termination message when
  ``--digest-file=/dev/termination-log`` is given (what the kubelet reports
  from that file), or exit code 1 and the error as the last log line.

Not simulated: kaniko's own snapshotting and layer cache (``--cache`` is
accepted and ignored), and registry credentials (the local registry needs none;
the docker-config Secret's mount is checked to exist in the pod, not used).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
from k8skit import HandledPod, Outcome

EXECUTOR_IMAGE = "lptest.invalid/kaniko-project/executor:sim"
"""The ``executor_image`` the kaniko tests configure; the controller hands its pods to us."""
KNOWN_FLAGS = frozenset(
    {
        "--context",
        "--dockerfile",
        "--destination",
        "--cache",
        "--cache-repo",
        "--label",
        "--digest-file",
        "--insecure",
    }
)


@dataclass
class KanikoSim:
    """The handler (``await sim(pod)``), and what it saw, for the tests to check."""

    docker: Any
    builds: list[dict[str, Any]] = field(default_factory=list)
    """The parsed arguments of every build it ran."""

    def install(self, controller: Any) -> None:
        controller.handle_image(lambda image: image == EXECUTOR_IMAGE, self)

    async def __call__(self, pod: HandledPod) -> Outcome:
        container = pod.manifest["spec"]["containers"][0]
        try:
            args = parse_args(container.get("args") or [])
            self.builds.append(args)
            archive = await anyio.to_thread.run_sync(fetch_context, pod, container, args)
        except ValueError as exc:
            return Outcome(exit_code=1, lines=(f"error: {exc}",))
        try:
            digest = await anyio.to_thread.run_sync(self._build_and_push, pod, archive, args)
        except BuildFailed as exc:
            return Outcome(exit_code=1, lines=(f"error building image: {exc}",))
        message = digest if args.get("--digest-file") == "/dev/termination-log" else None
        return Outcome(exit_code=0, termination_message=message)

    def _build_and_push(self, pod: HandledPod, archive: bytes, args: dict[str, Any]) -> str:
        """Build and push in a worker thread, sending each output line to the pod's log."""

        def log(line: str) -> None:
            anyio.from_thread.run(pod.log, line)

        destination = args["--destination"]
        labels = dict(label.split("=", 1) for label in args.get("--label", []))
        repository, _, tag = destination.rpartition(":")
        for chunk in self.docker.api.build(
            fileobj=io.BytesIO(archive),
            custom_context=True,
            encoding="gzip",
            dockerfile=args.get("--dockerfile", "Dockerfile"),
            tag=destination,
            labels=labels,
            rm=True,
            forcerm=True,
            decode=True,
        ):
            if "error" in chunk:
                raise BuildFailed(str(chunk["error"]).strip())
            for line in str(chunk.get("stream", "")).splitlines():
                if line.strip():
                    log(line)
        digest = None
        for chunk in self.docker.api.push(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise BuildFailed(f"pushing {destination}: {chunk['error']}")
            digest = (chunk.get("aux") or {}).get("Digest") or digest
        if digest is None:
            raise BuildFailed(f"pushing {destination}: no digest")
        log(f"Pushed {destination}")
        return str(digest)


class BuildFailed(Exception):
    """The simulated build or push failed (kaniko exits 1)."""


def parse_args(argv: list[str]) -> dict[str, Any]:
    """Kaniko-style ``--flag=value`` arguments (``--label`` repeats); unknown flags refused."""
    parsed: dict[str, Any] = {"--label": []}
    for arg in argv:
        flag, _, value = arg.partition("=")
        if flag not in KNOWN_FLAGS:
            raise ValueError(f"unknown flag: {flag}")
        if flag == "--label":
            parsed["--label"].append(value)
        else:
            parsed[flag] = value if "=" in arg else "true"
    for required in ("--context", "--destination"):
        if required not in parsed:
            raise ValueError(f"{required} is required")
    return parsed


def fetch_context(pod: HandledPod, container: dict[str, Any], args: dict[str, Any]) -> bytes:
    """The context archive from the pod's ConfigMap volume or from S3, as kaniko would read it."""
    context = args["--context"]
    namespace = pod.manifest["metadata"]["namespace"]
    if context.startswith("tar://"):
        path = context[len("tar://") :]
        mount = next(
            (m for m in container.get("volumeMounts", []) if path.startswith(m["mountPath"] + "/")),
            None,
        )
        if mount is None:
            raise ValueError(f"{path}: no such file (no volume mounted there)")
        volume = next(v for v in pod.manifest["spec"]["volumes"] if v["name"] == mount["name"])
        name = volume["configMap"]["name"]
        config_map = pod.emulator.get("v1/configmaps", namespace, name)
        if config_map is None:
            raise ValueError(f"ConfigMap {name} not found (the volume cannot be mounted)")
        key = path[len(mount["mountPath"]) + 1 :]
        return base64.b64decode(config_map["binaryData"][key])
    if context.startswith("s3://"):
        import boto3

        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        bucket, _, key = context[len("s3://") :].partition("/")
        s3 = boto3.client(
            "s3", endpoint_url=env.get("S3_ENDPOINT"), region_name=env.get("AWS_REGION")
        )
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    raise ValueError(f"unsupported --context {context}")
