"""The counter's item models: cart, search results, batches, Rx queue, controlled register,
reorder suggestions. Database-backed ones hold ids and fetch rows lazily (models/base.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QFont

from pharmacy.checkout import CartPreview, LinePreview
from pharmacy.money import fmt
from terminal.models.base import Column, Index, LazyTableModel

DISPLAY = Qt.ItemDataRole.DisplayRole
TOOLTIP = Qt.ItemDataRole.ToolTipRole
BACKGROUND = Qt.ItemDataRole.BackgroundRole
FOREGROUND = Qt.ItemDataRole.ForegroundRole
ALIGN = Qt.ItemDataRole.TextAlignmentRole
FONT = Qt.ItemDataRole.FontRole
USER = Qt.ItemDataRole.UserRole

RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

# expiry and status colours (background, foreground)
COLOURS = {
    "expired": ("#f5b7b1", "#641e16"),
    "recalled": ("#e6b0aa", "#4a0d0d"),
    "quarantined": ("#d7bde2", "#3b1f47"),
    "exp30": ("#fad7a0", "#5a3a00"),
    "exp90": ("#fcf3cf", "#4d4000"),
    "error": ("#f5b7b1", "#641e16"),
}


def _brush(hex_colour: str) -> QBrush:
    return QBrush(QColor(hex_colour))


def expiry_band(status: str, days_left: int) -> str | None:
    if status in ("expired", "recalled", "quarantined"):
        return status
    if days_left < 0:
        return "expired"
    if days_left <= 30:
        return "exp30"
    if days_left <= 90:
        return "exp90"
    return None


class _ListModel(QAbstractTableModel):
    COLUMNS: Sequence[Column] = ()

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else self._count()

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.COLUMNS)

    def _count(self) -> int:
        raise NotImplementedError

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = DISPLAY) -> Any:
        if role == DISPLAY and orientation == Qt.Orientation.Horizontal \
                and 0 <= section < len(self.COLUMNS):
            return self.COLUMNS[section][1]
        if role == DISPLAY and orientation == Qt.Orientation.Vertical \
                and 0 <= section < self._count():
            return str(section + 1)
        return None

    def flags(self, index: Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable


# ---- cart -----------------------------------------------------------------------------------
class CartModel(_ListModel):
    """The cart as previewed by the core: lines with their FEFO lots and any line error."""

    COLUMNS = (("no", "#"), ("item", "Item"), ("qty", "Qty"), ("lots", "Lot · expiry"),
               ("price", "Price"), ("amount", "Amount"))

    def __init__(self) -> None:
        super().__init__()
        self.preview: CartPreview | None = None
        self._lines: tuple[LinePreview, ...] = ()

    def _count(self) -> int:
        return len(self._lines)

    def line_at(self, row: int) -> LinePreview | None:
        return self._lines[row] if 0 <= row < len(self._lines) else None

    def row_of_line(self, line_id: int) -> int:
        for i, ln in enumerate(self._lines):
            if ln.line_id == line_id:
                return i
        return -1

    def set_preview(self, pv: CartPreview | None) -> None:
        new = () if pv is None else pv.lines
        old_ids = [ln.line_id for ln in self._lines]
        new_ids = [ln.line_id for ln in new]
        self.preview = pv
        if new_ids[:len(old_ids)] == old_ids and len(new_ids) > len(old_ids):
            if old_ids:
                self._lines = new[:len(old_ids)]
                self.dataChanged.emit(self.index(0, 0),
                                      self.index(len(old_ids) - 1, len(self.COLUMNS) - 1))
            self.beginInsertRows(QModelIndex(), len(old_ids), len(new_ids) - 1)
            self._lines = new
            self.endInsertRows()
        elif new_ids == old_ids:
            self._lines = new
            if new:
                self.dataChanged.emit(self.index(0, 0),
                                      self.index(len(new) - 1, len(self.COLUMNS) - 1))
        else:
            self.beginResetModel()
            self._lines = new
            self.endResetModel()

    def data(self, index: Index, role: int = DISPLAY) -> Any:
        if not index.isValid() or index.row() >= len(self._lines):
            return None
        ln = self._lines[index.row()]
        key = self.COLUMNS[index.column()][0]
        if role == DISPLAY:
            if key == "no":
                return str(index.row() + 1)
            if key == "item":
                badge = f"[{ln.schedule}] " if ln.schedule else ""
                rx = " ℞" if ln.rx_only else ""
                return f"{badge}{ln.name}{rx}"
            if key == "qty":
                return str(ln.qty)
            if key == "lots":
                return ln.error or ln.lots_text
            if key == "price":
                return fmt(ln.unit_price_cents)
            if key == "amount":
                return fmt(ln.amount_cents)
        if role == TOOLTIP:
            return f"NDC {ln.ndc}" + (f"\n{ln.error_code}: {ln.error}" if ln.error else "")
        if role == ALIGN and key in ("qty", "price", "amount", "no"):
            return RIGHT
        if role in (BACKGROUND, FOREGROUND) and ln.error_code:
            bg, fg = COLOURS["error"]
            return _brush(bg if role == BACKGROUND else fg)
        if role == FONT and key == "amount":
            f = QFont()
            f.setBold(True)
            return f
        if role == USER:
            return ln.line_id
        return None


# ---- search results ---------------------------------------------------------------------------
class SearchModel(_ListModel):
    COLUMNS = (("name", "Product"), ("ndc", "NDC"), ("price", "Price"),
               ("sellable", "Sellable"), ("badge", "Class"))

    def __init__(self) -> None:
        super().__init__()
        self.hits: list[Any] = []

    def _count(self) -> int:
        return len(self.hits)

    def set_hits(self, hits: Sequence[Any]) -> None:
        self.beginResetModel()
        self.hits = list(hits)
        self.endResetModel()

    def hit_at(self, row: int) -> Any:
        return self.hits[row] if 0 <= row < len(self.hits) else None

    def data(self, index: Index, role: int = DISPLAY) -> Any:
        if not index.isValid() or index.row() >= len(self.hits):
            return None
        h = self.hits[index.row()]
        key = self.COLUMNS[index.column()][0]
        if role == DISPLAY:
            if key == "badge":
                return (h.badge or "") + (" ℞" if h.rx_only else "")
            v = getattr(h, key)
            if key == "name" and h.strength and h.strength not in h.name:
                return f"{h.name} {h.strength}"
            return str(v)
        if role == ALIGN and key in ("price", "sellable"):
            return RIGHT
        if role == FOREGROUND and key == "sellable" and h.sellable == 0:
            return _brush("#a93226")
        if role == TOOLTIP:
            return f"GTIN {h.gtin}"
        return None


# ---- batches ----------------------------------------------------------------------------------
class BatchModel(LazyTableModel):
    COLUMNS = (("name", "Product"), ("ndc", "NDC"), ("lot", "Lot"), ("expiry", "Expiry"),
               ("days_left", "Days"), ("status", "Status"), ("on_hand", "On hand"),
               ("schedule", "Class"))

    def value(self, row: dict[str, Any], key: str, role: int) -> Any:
        if not row:
            return "" if role == DISPLAY else None
        band = expiry_band(row["status"], row["days_left"])
        if role == DISPLAY:
            v = row.get(key)
            if key == "name" and row.get("strength") and row["strength"] not in row["name"]:
                return f"{row['name']} {row['strength']}"
            return "" if v is None else str(v)
        if role == TOOLTIP:
            if row.get("reason"):
                return f"{row['status']}: {row['reason']}"
            return f"batch {row['batch_id']}"
        if role in (BACKGROUND, FOREGROUND) and band is not None:
            bg, fg = COLOURS[band]
            return _brush(bg if role == BACKGROUND else fg)
        if role == ALIGN and key in ("days_left", "on_hand"):
            return RIGHT
        if role == USER:
            return row.get("batch_id")
        return None


# ---- Rx queue --------------------------------------------------------------------------------
class RxQueueModel(LazyTableModel):
    COLUMNS = (("rx_number", "Rx #"), ("patient_name", "Patient"), ("drug", "Drug"),
               ("qty", "Qty"), ("state_label", "State"), ("bin", "Bin"), ("price", "Price"))
    STATE_COLOURS: ClassVar[dict[str, str]] = {
        "intake": "#d6eaf8", "verified": "#d5f5e3", "filled": "#fcf3cf", "labeled": "#fdebd0",
        "will_call": "#e8daef", "picked_up": "#eaeded", "cancelled": "#eaeded"}

    def value(self, row: dict[str, Any], key: str, role: int) -> Any:
        if not row:
            return "" if role == DISPLAY else None
        if role == DISPLAY:
            v = row.get(key)
            if key == "rx_number" and row.get("refill_number"):
                return f"{v} (refill {row['refill_number']})"
            return "" if v is None else str(v)
        if role == BACKGROUND and key == "state_label":
            return _brush(self.STATE_COLOURS.get(row.get("state", ""), "#ffffff"))
        if role == ALIGN and key in ("qty", "price"):
            return RIGHT
        if role == USER:
            return row.get("fill_id")
        if role == TOOLTIP and key == "drug":
            return row.get("directions") or row.get("drug")
        return None


# ---- controlled register ------------------------------------------------------------------------
class RegisterModel(LazyTableModel):
    COLUMNS = (("seq", "Seq"), ("at", "Time (UTC)"), ("kind", "Entry"), ("name", "Product"),
               ("lot", "Lot"), ("qty", "Qty"), ("schedule", "Sched"), ("hash", "Hash"))

    def value(self, row: dict[str, Any], key: str, role: int) -> Any:
        if not row:
            return "" if role == DISPLAY else None
        if role == DISPLAY:
            v = row.get(key)
            if key == "seq":
                return f"{row['replica']}·{v}"
            return "" if v is None else str(v)
        if role == ALIGN and key in ("qty",):
            return RIGHT
        if role == FONT and key == "hash":
            f = QFont("DejaVu Sans Mono")
            return f
        return None


# ---- reorder suggestions ------------------------------------------------------------------------
class ReorderModel(_ListModel):
    COLUMNS = (("name", "Product"), ("on_hand", "On hand"), ("suggested", "Suggest"),
               ("why", "Why"), ("model_version", "Model"))

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []

    def _count(self) -> int:
        return len(self.rows)

    def set_rows(self, rows: Sequence[dict[str, Any]]) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()

    def data(self, index: Index, role: int = DISPLAY) -> Any:
        if not index.isValid() or index.row() >= len(self.rows):
            return None
        r = self.rows[index.row()]
        key = self.COLUMNS[index.column()][0]
        if role == DISPLAY:
            v = r.get(key)
            if key == "suggested" and v is None:
                v = r.get("order_qty", r.get("suggested_qty", r.get("packs")))
            if key == "name" and v is None:
                v = r.get("ndc")
            return "" if v is None else str(v)
        if role == ALIGN and key in ("on_hand", "suggested"):
            return RIGHT
        return None
