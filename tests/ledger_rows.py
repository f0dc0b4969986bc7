"""Ledger rows for the tests that write them without a gateway."""

from __future__ import annotations

from typing import Any

from gateway.ledger.rows import Row
from gateway.observability.record import RequestRecord


def ledger_row(number: int, **fields: Any) -> Row:
    """The row of a finished chat request numbered `number` (its uid: the number in 32 hex
    digits), with `fields` of its RequestRecord set."""
    record = RequestRecord(
        request_id=f"r{number}",
        method="POST",
        path="/v1/chat/completions",
        client=None,
        started=0.0,
        uid=f"{number:032x}",
        **fields,
    )
    return Row(record, finished=1.0)
