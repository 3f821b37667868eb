"""A named PASS/FAIL verdict with the figure or evidence behind it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Check:
    """One verdict of a fault run."""

    name: str
    passed: bool
    detail: str = ""

    @property
    def verdict(self) -> str:
        """`PASS` or `FAIL`."""
        return "PASS" if self.passed else "FAIL"

    def line(self) -> str:
        """`PASS  name: detail`."""
        return f"{self.verdict}  {self.name}" + (f": {self.detail}" if self.detail else "")

    def to_json(self) -> dict[str, Any]:
        """As plain data."""
        return {"name": self.name, "verdict": self.verdict, "detail": self.detail}
