"""A test-side HTTP proxy in front of moto that can hold SageMaker training jobs InProgress.

moto's SageMaker completes a training job the moment it is created, so an
agent could never be killed while one runs. This proxy passes every request
through to moto's server unchanged (real boto3 on one side, real moto on the
other) and records the SageMaker requests it saw; while ``hold`` is set it
rewrites DescribeTrainingJob answers to ``InProgress``/``Training``. It is a
stand-in for a training job that takes a while, nothing more: the state moto
keeps (the job, its request, its tags, the CloudWatch log events) is moto's.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

HOP_HEADERS = {"host", "content-length", "connection", "transfer-encoding", "accept-encoding"}


class HoldingProxy:
    """``url`` forwards to ``upstream``; ``requests`` holds each SageMaker call's (target, body)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.hold = threading.Event()
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def calls(self, target: str) -> list[dict[str, Any]]:
        """The bodies of the calls of one action (``CreateTrainingJob``), in order."""
        with self._lock:
            return [body for name, body in self.requests if name == target]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                return

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target", "")
                action = target.partition(".")[2] if target.startswith("SageMaker.") else ""
                if action:
                    with proxy._lock:
                        proxy.requests.append((action, json.loads(body or b"{}")))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                answer = httpx.request(
                    self.command,
                    proxy.upstream + self.path,
                    content=body,
                    headers=headers,
                    timeout=30,
                )
                content = answer.content
                if action == "DescribeTrainingJob" and proxy.hold.is_set() and answer.is_success:
                    data = json.loads(content)
                    data.update(TrainingJobStatus="InProgress", SecondaryStatus="Training")
                    content = json.dumps(data).encode()
                self.send_response(answer.status_code)
                for key, value in answer.headers.items():
                    if key.lower() not in HOP_HEADERS | {"content-encoding"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def handle_one_request(self) -> None:
                # A killed agent drops its connections mid-answer: not the proxy's problem.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    super().handle_one_request()

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        return Handler

    @contextlib.contextmanager
    def running(self) -> Iterator[HoldingProxy]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
