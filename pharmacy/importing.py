"""What reference-data importers share: every bad row is reported with its line number, and
one bad row rejects the whole file (nothing is half-imported)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pharmacy.errors import PharmosError

MAX_ERRORS_LISTED = 20


@dataclass
class RowErrors:
    """Collects row problems while a file is read, then raises ``error`` naming the first.

    ``source``: the file every row comes from; leave it None when rows come from several
    files and each ``add`` names its file."""

    error: type[PharmosError]
    what: str  # what the store keeps when the import is refused, e.g. "Orange Book"
    source: str | None = None
    items: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0

    def add(self, line: int, problem: str, *, file: str | None = None) -> None:
        self.total += 1
        if len(self.items) < MAX_ERRORS_LISTED:
            item: dict[str, Any] = {"line": line, "problem": problem}
            self.items.append(item if file is None else {"file": file, **item})

    def raise_if_any(self) -> None:
        if not self.total:
            return
        first = self.items[0]
        file = first.get("file", self.source)
        more = f" (and {self.total - 1} more)" if self.total > 1 else ""
        raise self.error(
            f"{file} line {first['line']}: {first['problem']}{more}; nothing was imported, "
            f"the store keeps its previous {self.what}",
            file=file, line=first["line"], errors=self.items, error_count=self.total,
        )
