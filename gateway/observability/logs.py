"""Log formats: one JSON object a line (the default), or readable text for a terminal."""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import time
from typing import Any, TextIO

import orjson


@functools.lru_cache(maxsize=4)
def utc_seconds(second: int) -> str:
    """A whole second as ISO 8601 in UTC: formatted once, for every line written in it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def format_line(created: float, level: str, name: str, message: str, fields: Any, log_format: str) -> str:
    """One log line: a JSON object, or `time LEVEL logger: message key=value ...` as text."""
    stamp = f"{utc_seconds(int(created))}.{int(created * 1000) % 1000:03d}Z"
    if log_format == "text":
        text = f"{stamp} {level:<7} {name}: {message}"
        if isinstance(fields, dict):
            text += " " + " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
        return text
    line: dict[str, Any] = {"time": stamp, "level": level, "logger": name, "message": message}
    if isinstance(fields, dict):
        line.update(fields)
    return orjson.dumps(line, default=str).decode()


class LineFormatter(logging.Formatter):
    def __init__(self, log_format: str) -> None:
        super().__init__()
        self.log_format = log_format

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        if record.exc_info:
            fields = {**(fields or {}), "exception": self.formatException(record.exc_info)}
        return format_line(record.created, record.levelname, record.name, record.getMessage(), fields, self.log_format)


class JsonFormatter(LineFormatter):
    def __init__(self) -> None:
        super().__init__("json")


class TextFormatter(LineFormatter):
    def __init__(self) -> None:
        super().__init__("text")


class AccessLog:
    """The one line per request. Through `logging` by default; written straight to a stream
    by the command line, where `logging`'s machinery is a measurable share of a request's CPU.

    Lines written to a stream are buffered: they are formatted and go out together every
    FLUSH_SECONDS, or at FLUSH_LINES, and at exit, so that a request never waits on a write
    to the log file, and formatting runs in batches (faster, its code and data stay in the
    CPU's caches). A process killed outright loses at most FLUSH_SECONDS of lines.
    """

    NAME = "gateway.access"
    FLUSH_SECONDS = 0.25
    FLUSH_LINES = 256

    def __init__(self, stream: TextIO | None = None, log_format: str = "json") -> None:
        self._logger = logging.getLogger(self.NAME)
        self._stream = stream
        self._format = log_format
        self._pending: list[tuple[float, dict[str, Any]]] = []  # (time, fields) of lines not yet written
        self._flush_timer: asyncio.TimerHandle | None = None
        if stream is not None:
            atexit.register(self.flush)

    @property
    def enabled(self) -> bool:
        return self._logger.isEnabledFor(logging.INFO)

    def write(self, fields: dict[str, Any]) -> None:
        if self._stream is None:
            self._logger.info("request", extra={"fields": fields})
            return
        self._pending.append((time.time(), fields))
        if len(self._pending) >= self.FLUSH_LINES:
            self.flush()
        elif self._flush_timer is None:
            try:
                self._flush_timer = asyncio.get_running_loop().call_later(self.FLUSH_SECONDS, self.flush)
            except RuntimeError:  # no event loop: nothing would flush later
                self.flush()

    def flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if self._pending and self._stream is not None:
            pending, self._pending = self._pending, []
            log_format = self._format
            self._stream.write(
                "".join(
                    format_line(created, "INFO", self.NAME, "request", fields, log_format) + "\n"
                    for created, fields in pending
                )
            )
            self._stream.flush()


def configure_logging(level: str = "INFO", log_format: str = "json") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(LineFormatter(log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").disabled = True  # the gateway writes its own line per request
    logging.getLogger("alembic").setLevel(logging.WARNING)  # its plugin lines; the ledger logs its migrations
