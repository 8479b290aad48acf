"""The compliance gate the terminal uses: a verified bundle evaluated with Cedar.

``gate_for_store(store)`` returns one cached gate per open store. It loads (and verifies) the
store's active bundle once per installed bundle, re-checks which bundle is active at most
once a second, and falls back to rule 49 when no verified bundle is available: restricted
items (controlled, pseudoephedrine, India H/H1/X) are denied with BUNDLE_MISSING or
BUNDLE_INVALID and everything else is allowed.
"""

from __future__ import annotations

import hashlib
import time as _time
import weakref
from collections import ChainMap
from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

from pharmacy.clock import parse_iso
from pharmacy.compliance import ComplianceRequest, Decision, Reason, is_restricted
from pharmacy.history import SqlHistory
from pharmacy.store import Store
from policy_cache.bundle import VerifiedBundle
from policy_cache.engine import LineResult, Partition, PolicyEngine, RuleInfo, cedar_request
from policy_cache.errors import BundleTampered
from policy_cache.facts import Env, FactBuilder, LineEval, PolicyHistory, classify
from policy_cache.trust import trust_store

ENGINE = "cedar"
RULE_49 = "pharmos offline rule: REGULATIONS.md §7 rule 49"
_SEVERITY_RANK = {"deny": 0, "hold": 1, "warn": 2, "info": 3}
_PENDING = LineResult(False, (), ("not evaluated",))  # a placeholder, always replaced


class _Vars(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def render(template: str | None, ev: LineEval) -> str:
    if not template:
        return ""
    v = _Vars(ev.context)
    if isinstance(ev.vars, ChainMap):  # message values in layers, the first one wins
        for layer in reversed(ev.vars.maps):
            v.update(layer)
    else:
        v.update(ev.vars)
    try:
        return template.format_map(v)
    except (ValueError, IndexError):
        return template


class BundleGate:
    """A ComplianceGate over one verified bundle. ``decide`` needs an Env for terminal
    state (clock, last time seen, allowances, history); without one it uses the request's
    time and history."""

    engine = ENGINE

    def __init__(self, bundle: VerifiedBundle) -> None:
        self.bundle = bundle
        self.meta = bundle.meta
        self.data = bundle.data
        self.policies = PolicyEngine(bundle)
        self.reference = False  # tests: evaluate the full, uncompiled policy set instead
        # allow decisions by their (undeduplicated) obligations: few combinations exist, and a
        # Decision is immutable, so one is built per combination and shared
        self._allows: dict[tuple[str, ...], Decision] = {}

    def decide(self, request: ComplianceRequest, env: Env | None = None) -> Decision:
        if env is None:
            env = Env(now=request.at, history=request.history)
        if request.jurisdiction not in self.meta.jurisdictions:
            return self._not_covered(request)
        fb = FactBuilder(self.data, self.meta, request, env)
        evals = fb.build()
        results = self._evaluate(fb, request, evals)
        return self._assemble(fb, request, evals, results)

    # ---- evaluation ----------------------------------------------------------------------------
    def full_context(self, fb: FactBuilder, ev: LineEval) -> dict[str, Any]:
        """The schema-valid Cedar context of a line before compilation: jurisdiction, rule
        packs, flags, numbers and caps (what the uncompiled policies are written against)."""
        ctx: dict[str, Any] = {"j": fb.req.jurisdiction, "rules": sorted(fb.rules),
                               "f": sorted(ev.flags), **ev.context}
        ctx.update((f"cap_{name}", value) for name, value in fb.caps_key)
        return ctx

    def _evaluate(self, fb: FactBuilder, request: ComplianceRequest, evals: list[LineEval],
                  *, permits_only: bool = False) -> list[LineResult]:
        if self.reference:
            user_id = str((request.user or {}).get("id") or "anonymous")
            return self._evaluate_reference(fb, user_id, evals, permits_only)
        parts = self.policies.partitions_for(fb.active)
        out: list[LineResult] = []
        # lines whose partition leaves Cedar something to evaluate, grouped by partition (one
        # batch each); a static partition's answer is known without a request
        groups: dict[int, tuple[Partition, list[int]]] = {}
        for i, ev in enumerate(evals):
            part = self._partition(parts, fb, ev.tags, ev.flags, permits_only)
            if part.static is not None:
                out.append(part.static)
                continue
            out.append(_PENDING)
            group = groups.get(part.serial)
            if group is None:
                groups[part.serial] = (part, [i])
            else:
                group[1].append(i)
        if groups:
            user_id = str((request.user or {}).get("id") or "anonymous")
            batches: list[tuple[Partition, list[dict[str, Any]]]] = []
            for part, idxs in groups.values():
                reqs = []
                for i in idxs:
                    ev = evals[i]
                    reqs.append(cedar_request(user_id, ev.line.line_no,
                                              part.context(ev.context, ev.flags)))
                batches.append((part, reqs))
            answers = self.policies.evaluate(batches)
            n = 0
            for _part, idxs in groups.values():
                for i in idxs:
                    out[i] = answers[n]
                    n += 1
        return out

    def _partition(self, parts: dict[tuple[Any, ...], Partition], fb: FactBuilder,
                   tags: frozenset[str], flags: frozenset[str], permits_only: bool) -> Partition:
        key = (tags, flags, permits_only)
        part = parts.get(key)
        if part is None:
            part = self.policies.partition(fb.chain, tags, fb.rules, fb.caps_key, flags,
                                           permits_only=permits_only)
            if len(parts) >= 4096:
                parts.clear()
            parts[key] = part
        return part

    def _evaluate_reference(self, fb: FactBuilder, user_id: str, evals: list[LineEval],
                            permits_only: bool) -> list[LineResult]:
        part = self.policies.unfolded(permits_only=permits_only)
        reqs = [cedar_request(user_id, ev.line.line_no, self.full_context(fb, ev))
                for ev in evals]
        return self.policies.evaluate([(part, reqs)], validate=True)

    def _assemble(self, fb: FactBuilder, request: ComplianceRequest, evals: list[LineEval],
                  results: list[LineResult]) -> Decision:
        reasons: list[Reason] = []
        obligations: list[str] = []
        blocked_lines: dict[int, list[Reason]] = {}
        for ev, res in zip(evals, results, strict=True):
            line_no = ev.line.line_no
            if res.errors:
                reasons.append(Reason(
                    "POLICY_EVALUATION_ERROR",
                    f"{ev.line.name}: the policy bundle could not evaluate this line "
                    f"({res.errors[0]}); it is refused until the bundle is fixed",
                    RULE_49, "deny", False, None, line_no=line_no))
                continue
            if not res.allowed and not res.rules:
                reasons.append(Reason("POLICY_NO_PERMIT", f"{ev.line.name}: no policy permits "
                                      "this line", RULE_49, "deny", False, None, line_no=line_no))
                continue
            obligations.extend(res.obligations)
            for rule in res.reasons:
                r = self._reason(rule, ev)
                reasons.append(r)
                if rule.outcome != "warn":
                    blocked_lines.setdefault(line_no, []).append(r)
        reasons = self._apply_override(request, reasons)
        # lines whose every blocking reason was overridden: collect their warnings/obligations
        cleared = [ev for ev in evals if ev.line.line_no in blocked_lines and not any(
            r.line_no == ev.line.line_no and r.severity in ("deny", "hold") for r in reasons)
                   ] if blocked_lines else []
        if cleared:
            for ev, res in zip(cleared, self._evaluate(fb, request, cleared,
                                                       permits_only=True), strict=True):
                for rule in res.rules:
                    obligations.extend(rule.obligations)
                    if rule.outcome == "warn":
                        reasons.append(self._reason(rule, ev))
        return self._decision(reasons, obligations)

    def _reason(self, rule: RuleInfo, ev: LineEval) -> Reason:
        return Reason(rule.code or rule.rule_id, render(rule.message, ev), rule.citation,
                      "warn" if rule.outcome == "warn" else rule.outcome,  # type: ignore[arg-type]
                      rule.overridable, rule.rule_id, line_no=ev.line.line_no)

    def _decision(self, reasons: list[Reason], obligations: Iterable[str]) -> Decision:
        if not reasons:  # the common case
            given = tuple(obligations)
            allow = self._allows.get(given)
            if allow is None:
                if len(self._allows) >= 1024:
                    self._allows.clear()
                allow = self._allows[given] = Decision("allow", (), tuple(dict.fromkeys(given)),
                                                       self.meta.bundle_version, ENGINE)
            return allow
        seen: set[tuple[str, str, int | None]] = set()
        uniq: list[Reason] = []
        for r in sorted(reasons, key=lambda r: _SEVERITY_RANK.get(r.severity, 9)):
            key = (r.code, r.message, r.line_no)
            if key not in seen:
                seen.add(key)
                uniq.append(r)
        sev = {r.severity for r in uniq}
        outcome = "deny" if "deny" in sev else "hold" if "hold" in sev else "allow"
        return Decision(outcome, tuple(uniq), tuple(dict.fromkeys(obligations)),  # type: ignore[arg-type]
                        self.meta.bundle_version, ENGINE)

    # ---- overrides -------------------------------------------------------------------------
    def _apply_override(self, request: ComplianceRequest, reasons: list[Reason]) -> list[Reason]:
        ov = (request.extra or {}).get("override")
        if ov is None:
            return reasons
        who = None
        codes: set[str] = set()
        why = ""
        problem = None
        if not isinstance(ov, dict):
            problem = "the override must be an object with codes, reason and pharmacist"
        else:
            raw_codes = ov.get("codes")
            codes = {str(c) for c in raw_codes} if isinstance(raw_codes, list) else set()
            why = str(ov.get("reason") or "").strip()
            who = ov.get("pharmacist") or request.user or {}
            if not codes:
                problem = "the override names no reason codes"
            elif not why:
                problem = "an override needs a written reason"
            elif not isinstance(who, dict) or not str(who.get("id") or "").strip():
                problem = "an override needs the pharmacist's login"
            elif who.get("role") != "pharmacist":
                problem = (f"only a pharmacist may override a rule; {who.get('id')} is signed "
                           f"in as {who.get('role') or 'no role'}")
        if problem is not None:
            return [*reasons, Reason("OVERRIDE_REJECTED", problem,
                                     "45 CFR 164.312(b) (audit of overrides)", "warn")]
        assert isinstance(who, dict)
        pid = str(who["id"])
        out: list[Reason] = []
        refused: set[str] = set()
        for r in reasons:
            if r.code in codes and r.overridable:
                out.append(replace(r, severity="info", overridden_by=pid,
                                   message=f"overridden by pharmacist {pid}: {why} (rule: "
                                           f"{r.message})"))
            else:
                if r.code in codes and r.severity in ("deny", "hold"):
                    refused.add(r.code)
                out.append(r)
        for code in sorted(refused):
            out.append(Reason("OVERRIDE_NOT_ALLOWED",
                              f"{code} is a legal requirement and cannot be overridden",
                              None, "warn"))
        return out

    def _not_covered(self, request: ComplianceRequest) -> Decision:
        reasons = []
        for ln in request.lines:
            cls = classify(self.data, ln.ndc, ln.dea_schedule, ln.india_schedule, ln.cmea,
                           ln.ingredients, ln.attrs)
            if cls.restricted:
                reasons.append(Reason(
                    "BUNDLE_JURISDICTION_MISSING",
                    f"{ln.name} is a restricted item and the policy bundle "
                    f"{self.meta.bundle_version} has no rules for {request.jurisdiction}; "
                    "ask head office for a bundle that covers this store",
                    RULE_49, "deny", line_no=ln.line_no))
        return Decision("deny" if reasons else "allow", tuple(reasons), (),
                        self.meta.bundle_version, ENGINE)


def fallback_decision(request: ComplianceRequest, code: str, why: str) -> Decision:
    """Rule 49 without a usable bundle: refuse restricted items, allow the rest."""
    reasons = tuple(
        Reason(code, f"{ln.name} is a restricted item (controlled, pseudoephedrine or India "
                     f"H/H1/X) and {why}; unrestricted items can still be sold",
               RULE_49, "deny", line_no=ln.line_no)
        for ln in request.lines if is_restricted(ln))
    return Decision("deny" if reasons else "allow", reasons, (), None, ENGINE)


# ---- the store's gate ---------------------------------------------------------------------
_LOADED: dict[tuple[str, tuple[str, ...]], BundleGate] = {}
_GATES: weakref.WeakKeyDictionary[Store, StoreGate] = weakref.WeakKeyDictionary()
REFRESH_S = 1.0


def load_gate(raw: bytes, sha: str, trust_ids: tuple[str, ...], verify: Any) -> BundleGate:
    gate = _LOADED.get((sha, trust_ids))
    if gate is None:
        gate = remember_gate(sha, trust_ids, BundleGate(verify(raw)))
    return gate


def remember_gate(sha: str, trust_ids: tuple[str, ...], gate: BundleGate) -> BundleGate:
    """Keep a verified, parsed bundle for this process (the install has just built it)."""
    if len(_LOADED) >= 8:
        _LOADED.pop(next(iter(_LOADED)))
    _LOADED[(sha, trust_ids)] = gate
    return gate


class StoreGate:
    """ComplianceGate for an open store (what ``terminal.wiring`` wires into the Dispenser)."""

    engine = ENGINE

    def __init__(self, store: Store) -> None:
        self.store = store
        self.history: PolicyHistory = SqlHistory(store.conn)
        self._gate: BundleGate | None = None
        self._sha: str | None = None
        self._problem: tuple[str, str] = ("BUNDLE_MISSING", "no signed policy bundle is "
                                          "installed on this terminal")
        self._checked = -1e9
        self._last_seen: datetime | None = None
        self._timezone: str | None = None
        self._allowances: dict[str, Any] | None = None

    def invalidate(self) -> None:
        self._checked = -1e9
        self._last_seen = None

    @property
    def bundle_gate(self) -> BundleGate | None:
        self._refresh()
        return self._gate

    def _refresh(self) -> None:
        mono = _time.monotonic()
        if mono - self._checked < REFRESH_S:
            return
        self._checked = mono
        from policy_cache import install
        from policy_cache.allowances import current_allowances

        # settings a decision needs, read with the bundle check rather than on every sale;
        # grant_allowances() and bundle installs invalidate() this gate
        self._timezone = self.store.get_setting("timezone")
        self._allowances = current_allowances(self.store)
        conn = self.store.conn
        row = conn.execute(
            "SELECT sha256 FROM policy_bundles WHERE status = 'active'").fetchone()
        self._load_last_seen()
        if row is None:
            self._gate, self._sha = None, None
            self._problem = ("BUNDLE_MISSING", "no signed policy bundle is installed on this "
                             "terminal")
            return
        if row[0] == self._sha and self._gate is not None:
            return
        active = install.active_row(conn)
        assert active is not None
        sha, raw = active
        trust = trust_store(self.store)
        try:
            if hashlib.sha256(raw).hexdigest() != sha:
                raise BundleTampered("the stored bundle does not match its recorded hash")
            self._gate = load_gate(raw, sha, tuple(trust.key_ids()),
                                   lambda b: install.verify_for_store(self.store, b, trust))
            self._sha = sha
        except Exception as e:  # any verification failure: never use it (rule 49)
            self._gate, self._sha = None, None
            code = getattr(e, "code", "BUNDLE_INVALID")
            self._problem = ("BUNDLE_INVALID", f"the installed policy bundle fails verification "
                             f"({code}); reinstall a bundle signed by head office")

    def _load_last_seen(self) -> None:
        from policy_cache import install

        seen = [s for s in (install.stored_last_seen(self.store),
                            self._history_last()) if s is not None]
        if self._last_seen is not None:
            seen.append(self._last_seen)
        self._last_seen = max(seen) if seen else None

    def _history_last(self) -> datetime | None:
        last = getattr(self.history, "last_decision_at", lambda: None)()
        try:
            return parse_iso(last) if last else None
        except ValueError:
            return None

    def decide(self, request: ComplianceRequest) -> Decision:
        self._refresh()
        gate = self._gate
        if gate is None:
            return fallback_decision(request, *self._problem)
        now = self.store.clock()
        env = Env(now=now, last_seen=self._last_seen,
                  allowances=self._allowances if request.offline else None,
                  history=self.history, timezone=self._timezone)
        decision = gate.decide(request, env)
        if self._last_seen is None or now > self._last_seen:
            self._last_seen = now
        return decision


def gate_for_store(store: Store) -> StoreGate:
    gate = _GATES.get(store)
    if gate is None:
        gate = StoreGate(store)
        _GATES[store] = gate
    return gate


def substitution_law(store: Store) -> dict[str, Any] | None:
    """The state substitution-law table of the active, verified bundle (None without one)."""
    bundle = gate_for_store(store).bundle_gate
    return None if bundle is None else bundle.data.substitution_law


def invalidate(store: Store) -> None:
    gate = _GATES.get(store)
    if gate is not None:
        gate.invalidate()
