"""A simulator of ordinary pharmacy weeks with injected diversion patterns.

Ordinary staff work 8-hour shifts on about five days a week, dispense controlled drugs at
their own pace, sometimes stay late, void or override now and then, write off a damaged unit
now and then, and find small count differences. Injected patterns (one per affected
user-week, with a random intensity so that some are subtle):

- ``off_hours``: extra controlled dispenses outside opening hours;
- ``voids``: dispensed then voided sales (the stock leaves, the sale disappears);
- ``count_shrink``: repeated large negative count variances;
- ``adjust_loss``: repeated "damaged"/"loss" write-offs;
- ``partial_split``: one prescription filled as many partial fills;
- ``overrides``: warnings overridden far more often than colleagues.

Labels are per (user, week). Everything is driven by one ``random.Random(seed)``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from models.diversion import Activity

PATTERNS = ("off_hours", "voids", "count_shrink", "adjust_loss", "partial_split", "overrides")


@dataclass(frozen=True)
class SimConfig:
    users: int = 12
    weeks: int = 8
    diversion_share: float = 0.0   # share of user-weeks with an injected pattern
    seed: int = 0
    open_hour: int = 8
    close_hour: int = 20
    start: datetime = datetime(2026, 1, 5)   # a Monday
    patterns: Sequence[str] = PATTERNS


@dataclass(frozen=True)
class SimResult:
    activities: list[Activity]
    labels: dict[tuple[str, int], str | None]   # (user, week) -> pattern or None

def _poisson(rng: random.Random, lam: float) -> int:
    # Knuth for small means, normal approximation for large ones.
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, lam ** 0.5)))
    limit, k, p = pow(2.718281828459045, -lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def simulate(cfg: SimConfig) -> SimResult:
    rng = random.Random(cfg.seed)
    acts: list[Activity] = []
    labels: dict[tuple[str, int], str | None] = {}
    rx_seq = 0
    for u in range(cfg.users):
        user = f"user-{cfg.seed}-{u:02d}"
        rate = rng.uniform(3.0, 22.0)            # controlled dispenses per shift
        shift_start = rng.choice([8, 8, 9, 10, 12])
        late_p = rng.uniform(0.0, 0.12)          # chance a shift runs past closing
        void_p = rng.uniform(0.0, 0.03)
        override_p = rng.uniform(0.0, 0.04)
        refuse_p = rng.uniform(0.0, 0.05)
        partial_p = rng.uniform(0.0, 0.06)
        for w in range(cfg.weeks):
            pattern: str | None = None
            if rng.random() < cfg.diversion_share:
                pattern = rng.choice(list(cfg.patterns))
            labels[(user, w)] = pattern
            intensity = rng.uniform(0.5, 1.5)
            days = sorted(rng.sample(range(7), rng.choice([3, 4, 5, 5, 5, 6])))
            for d in days:
                day = cfg.start + timedelta(days=7 * w + d)
                end = min(shift_start + 8, cfg.close_hour)
                if rng.random() < late_p:
                    end_late = cfg.close_hour + rng.uniform(0.2, 1.0)
                else:
                    end_late = float(end)
                n = _poisson(rng, rate)
                for _ in range(n):
                    h = rng.uniform(shift_start, end_late)
                    at = day + timedelta(hours=h)
                    rx_seq += 1
                    rx = f"RX{rx_seq}"
                    partial = rng.random() < partial_p
                    qty = rng.choice([10, 14, 20, 28, 30, 60])
                    acts.append(Activity(user, at, "dispense", qty, rx, partial))
                    if partial and rng.random() < 0.3:   # the rest of a partial fill
                        acts.append(Activity(user, at + timedelta(days=2), "dispense", qty, rx,
                                             True))
                    if rng.random() < void_p:
                        acts.append(Activity(user, at + timedelta(minutes=3), "void"))
                    if rng.random() < override_p:
                        acts.append(Activity(user, at, "override"))
                    if rng.random() < refuse_p:
                        acts.append(Activity(user, at, "refusal"))
                if rng.random() < 0.03:
                    acts.append(Activity(user, day + timedelta(hours=shift_start + 1), "adjust",
                                         -rng.choice([1, 1, 2])))
                if rng.random() < 0.12:
                    delta = rng.choice([-1, -1, 1, -2])
                    acts.append(Activity(user, day + timedelta(hours=shift_start + 2), "count",
                                         delta))
                if pattern is not None:
                    rx_seq = _inject(rng, acts, user, day, pattern, intensity, rate,
                                     shift_start, cfg, rx_seq)
    acts.sort(key=lambda a: a.at)
    return SimResult(acts, labels)


def _inject(rng: random.Random, acts: list[Activity], user: str, day: datetime, pattern: str,
            intensity: float, rate: float, shift_start: int, cfg: SimConfig,
            rx_seq: int) -> int:
    """Add one working day's worth of a diversion pattern."""
    per_day = intensity
    if pattern == "off_hours":
        for _ in range(_poisson(rng, 1.2 * per_day)):
            h = rng.choice([rng.uniform(cfg.close_hour + 0.5, 23.5),
                            rng.uniform(5.0, cfg.open_hour - 0.25)])
            rx_seq += 1
            acts.append(Activity(user, day + timedelta(hours=h), "dispense",
                                 rng.choice([20, 30, 60]), f"RX{rx_seq}"))
    elif pattern == "voids":
        for _ in range(_poisson(rng, max(1.0, 0.12 * rate) * per_day)):
            acts.append(Activity(user, day + timedelta(hours=rng.uniform(shift_start,
                                                                         shift_start + 8)),
                                 "void"))
    elif pattern == "count_shrink":
        if rng.random() < 0.6 * per_day:
            acts.append(Activity(user, day + timedelta(hours=shift_start + 3), "count",
                                 -rng.randint(3, 12)))
    elif pattern == "adjust_loss":
        if rng.random() < 0.6 * per_day:
            acts.append(Activity(user, day + timedelta(hours=shift_start + 4), "adjust",
                                 -rng.randint(2, 10)))
    elif pattern == "partial_split":
        if rng.random() < 0.5 * per_day:
            rx_seq += 1
            rx = f"RX{rx_seq}"
            for k in range(rng.randint(2, 4)):
                acts.append(Activity(user, day + timedelta(hours=shift_start + 1 + k), "dispense",
                                     rng.choice([5, 10]), rx, True))
    elif pattern == "overrides":
        for _ in range(_poisson(rng, max(1.0, 0.1 * rate) * per_day)):
            acts.append(Activity(user, day + timedelta(hours=rng.uniform(shift_start,
                                                                         shift_start + 8)),
                                 "override"))
    return rx_seq


def user_weeks(result: SimResult, cfg: SimConfig) -> tuple[list[tuple[str, int]],
                                                           list[str | None]]:
    """The (user, week) keys with activity, and their labels."""
    keys = sorted(result.labels)
    return keys, [result.labels[k] for k in keys]
