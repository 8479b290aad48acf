"""Qt item models that hold ids and fetch rows lazily (Anki's browser table model).

A model knows the ordered ids of what it shows. ``data()`` for a row not yet loaded asks the
database worker for the page around it and returns a placeholder; when the rows arrive they
are cached and ``dataChanged`` is emitted. Writes return what they changed (``refresh``):
only those rows are fetched again.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt

from terminal.tasks import TaskManager

Index = QModelIndex | QPersistentModelIndex
Column = tuple[str, str]  # (row key, header)
PLACEHOLDER = "…"


class LazyTableModel(QAbstractTableModel):
    COLUMNS: Sequence[Column] = ()
    PAGE = 64

    def __init__(self, tasks: TaskManager,
                 fetch: Callable[[list[Any]], dict[Any, dict[str, Any]]]) -> None:
        super().__init__()
        self._tasks = tasks
        self._fetch = fetch
        self._ids: list[Hashable] = []
        self._rows: dict[Hashable, dict[str, Any]] = {}
        self._loading: set[int] = set()
        self._generation = 0

    # ---- ids --------------------------------------------------------------------------------
    def set_ids(self, ids: Sequence[Hashable]) -> None:
        self.beginResetModel()
        self._generation += 1
        keep = set(ids)
        self._rows = {k: v for k, v in self._rows.items() if k in keep}
        self._ids = list(ids)
        self._loading.clear()
        self.endResetModel()

    def ids(self) -> list[Hashable]:
        return list(self._ids)

    def id_at(self, row: int) -> Hashable | None:
        return self._ids[row] if 0 <= row < len(self._ids) else None

    def row_of(self, ident: Hashable) -> int:
        try:
            return self._ids.index(ident)
        except ValueError:
            return -1

    def row_data(self, row: int) -> dict[str, Any] | None:
        ident = self.id_at(row)
        return None if ident is None else self._rows.get(ident)

    def refresh(self, changed: Sequence[Hashable]) -> None:
        """Fetch these ids again (after a write said they changed)."""
        present = [i for i in changed if i in self._rows or i in self._ids]
        for i in present:
            self._rows.pop(i, None)
        wanted = [i for i in present if i in set(self._ids)]
        if not wanted:
            return
        gen = self._generation

        def done(rows: dict[Hashable, dict[str, Any]]) -> None:
            self._arrived(gen, None, rows, wanted)

        self._tasks.db(self._fetch, wanted, on_done=done)

    def loaded(self) -> bool:
        return all(i in self._rows for i in self._ids)

    # ---- Qt model -----------------------------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._ids)

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        if orientation == Qt.Orientation.Horizontal and 0 <= section < len(self.COLUMNS):
            return self.COLUMNS[section][1]
        if orientation == Qt.Orientation.Vertical and 0 <= section < len(self._ids):
            return str(section + 1)
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self._ids):
            return None
        row = self._rows.get(self._ids[index.row()])
        if row is None:
            self._request(index.row())
            if role == Qt.ItemDataRole.DisplayRole and index.column() == 0:
                return PLACEHOLDER
            return None
        key = self.COLUMNS[index.column()][0]
        return self.value(row, key, role)

    def value(self, row: dict[str, Any], key: str, role: int) -> Any:
        """Override for colours, alignment and formatting."""
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole):
            v = row.get(key)
            return "" if v is None else str(v)
        return None

    # ---- lazy fetching ------------------------------------------------------------------------
    def _request(self, row: int) -> None:
        page = row // self.PAGE
        if page in self._loading:
            return
        self._loading.add(page)
        ids = self._ids[page * self.PAGE:(page + 1) * self.PAGE]
        gen = self._generation

        def done(rows: dict[Hashable, dict[str, Any]]) -> None:
            self._arrived(gen, page, rows, ids)

        self._tasks.db(self._fetch, ids, on_done=done)

    def _arrived(self, generation: int, page: int | None, rows: dict[Hashable, dict[str, Any]],
                 wanted: Sequence[Hashable] = ()) -> None:
        if generation != self._generation:
            return  # the ids were replaced meanwhile
        if page is not None:
            self._loading.discard(page)
        rows = dict(rows)
        for ident in wanted:  # gone meanwhile: show an empty row rather than ask again
            rows.setdefault(ident, {})
        self._rows.update(rows)
        positions = {ident: i for i, ident in enumerate(self._ids)}
        changed = sorted(positions[k] for k in rows if k in positions)
        if changed:
            self.dataChanged.emit(self.index(changed[0], 0),
                                  self.index(changed[-1], len(self.COLUMNS) - 1))
