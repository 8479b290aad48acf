"""Weekly sales series for training and evaluation (``../shared/data/pharma_sales``).

``salesweekly.csv`` was re-saved through Excel: dates are month-first but mixed, ``01-05-2014``
when the day is 12 or less and ``1/19/2014`` otherwise. ISO dates (the ``derived`` files) are
accepted too.
"""

from __future__ import annotations

import csv
import itertools
import math
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pharmacy.errors import BadInput


@dataclass(frozen=True)
class WeeklyDataset:
    """Weekly totals: ``values[t, j]`` is series ``names[j]`` in the week ending ``weeks[t]``."""

    weeks: tuple[date, ...]
    names: tuple[str, ...]
    values: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        if self.values.shape != (len(self.weeks), len(self.names)):
            raise BadInput("dataset shape does not match its weeks and series",
                           code="BAD_DATASET")

    @property
    def n_weeks(self) -> int:
        return len(self.weeks)

    def head(self, n: int) -> WeeklyDataset:
        return WeeklyDataset(self.weeks[:n], self.names, self.values[:n])


def parse_date(text: str) -> date:
    """ISO ``2014-01-05``, or month-first ``01-05-2014`` / ``1/19/2014``."""
    s = text.strip()
    try:
        if len(s) == 10 and s[4] == "-" and s[7] == "-":
            return date.fromisoformat(s)
        sep = "/" if "/" in s else "-"
        month, day, year = (int(p) for p in s.split(sep))
        return date(year, month, day)
    except (ValueError, IndexError):
        raise BadInput(f"{text!r} is not a date (YYYY-MM-DD or month-first M/D/YYYY)",
                       code="BAD_DATASET") from None


def load_weekly(path: Path | str) -> WeeklyDataset:
    """Read a weekly CSV: first column the week-ending date, then one column per series."""
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise BadInput(f"cannot read {p}: {e.strerror}", code="BAD_DATASET") from None
    except (UnicodeDecodeError, csv.Error):
        raise BadInput(f"{p} is not a CSV text file", code="BAD_DATASET") from None
    if len(rows) < 2 or len(rows[0]) < 2:
        raise BadInput(f"{p} has no data rows", code="BAD_DATASET")
    header = [h.strip() for h in rows[0]]
    names = tuple(header[1:])
    weeks: list[date] = []
    values: list[list[float]] = []
    for n, row in enumerate(rows[1:], start=2):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise BadInput(f"{p} line {n}: {len(row)} fields, expected {len(header)}",
                           code="BAD_DATASET")
        weeks.append(parse_date(row[0]))
        vals: list[float] = []
        for c in row[1:]:
            try:
                v = float(c) if c.strip() else math.nan
            except ValueError:
                raise BadInput(f"{p} line {n}: {c!r} is not a number",
                               code="BAD_DATASET") from None
            vals.append(v)
        values.append(vals)
    if any(b <= a for a, b in itertools.pairwise(weeks)):
        raise BadInput(f"{p}: weeks are not in increasing order", code="BAD_DATASET")
    return WeeklyDataset(tuple(weeks), names, np.asarray(values, dtype=np.float64))


def week_end(d: date) -> date:
    """The Sunday that ends the (Monday-based) week containing ``d``."""
    from datetime import timedelta

    return d + timedelta(days=6 - d.weekday())
