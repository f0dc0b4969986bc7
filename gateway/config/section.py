"""What a config section's checks need of config.checks.ConfigChecker, as a Protocol: the
sections (auth, ledger, quorum, store) are imported by checks, so they name its methods
here instead of importing it."""

from __future__ import annotations

from typing import Any, Protocol


class SectionChecker(Protocol):
    """Records problems and warnings, each named by its key path, and reads typed values."""

    def problem(self, path: str, message: str) -> None: ...

    def warning(self, path: str, message: str) -> None: ...

    def mapping(self, node: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]: ...

    def string(
        self, node: dict[str, Any], key: str, path: str, default: str = "", *, required: bool = False
    ) -> str: ...

    def integer(self, node: dict[str, Any], key: str, path: str, default: int, *, minimum: int = 1) -> int: ...

    def seconds(self, node: dict[str, Any], key: str, path: str, default: float, *, zero: bool = False) -> float: ...

    def boolean(self, node: dict[str, Any], key: str, path: str, default: bool) -> bool: ...
