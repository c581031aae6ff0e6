"""The agent's own log: to stderr, through the redactor, as text or JSON lines."""

from __future__ import annotations

import json
import logging
import sys
import time

from launchplane.core.redaction import Redactor


class RedactingFilter(logging.Filter):
    """Scrubs every log record with the agent's redactor: no secret value reaches a log."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor.scrub(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = self.redactor.scrub(
                logging.Formatter().formatException(record.exc_info)
            )
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO UTC), level, logger, message[, exception]."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry)


def configure_logging(level: str, json_logs: bool, redactor: Redactor) -> None:
    """Log to stderr through the redactor; ``json_logs`` for log collectors."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter(redactor))
    handler.setFormatter(
        JsonFormatter()
        if json_logs
        else logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%d %H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # One line per request (per socket event for httpcore) would drown the agent's own
    # lines; httpx's request lines are kept at debug level.
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # botocore logs whole response bodies at DEBUG, before a value is registered with
    # the redactor (GetSecretValue, DescribeTrainingJob's Environment): never at debug.
    logging.getLogger("botocore.parsers").setLevel(logging.INFO)
    if level.upper() != "DEBUG":
        logging.getLogger("httpx").setLevel(logging.WARNING)
