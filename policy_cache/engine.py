"""Cedar evaluation of a verified bundle: policies parsed once per partition, mapped back from
Cedar's positional ids to rule codes and citations.

Cedar has only permit and forbid. A bundle's own outcomes live in annotations:

* ``@outcome("deny")`` / ``@outcome("hold")`` on forbid policies: when any matches, Cedar
  denies and reports every matching forbid policy;
* ``@outcome("warn")`` / ``@outcome("obligation")`` on permit policies: when no forbid
  matches, Cedar allows and reports every matching permit policy, so warnings and obligations
  come back from the same evaluation;
* ``@outcome("base")``: the one unconditional permit.

Partitions. A line is evaluated against the policies whose ``@applies`` tag it carries and
whose ``@jurisdiction`` is the line's or an ancestor. Everything about a line that is not a
number is known before evaluation: the rule packs and caps in force for the jurisdiction and
day, and the line's flags (``context.f``). The partition for that combination is compiled
once: ``context.rules.contains(..)``, ``context.f.contains(..)``, ``containsAny`` and
``context.cap_*`` / ``context has cap_*`` become constants, constant conditions are folded
(``&&``, ``||``, ``!``, ``if``), and a policy whose condition folds to false is left out.
Cedar then evaluates the residual policies against a context holding only the numbers they
reference. Folding preserves Cedar's semantics, so the decision is the one the full policy
set gives; tests check that on every §7 case.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import cedarpy

from policy_cache.bundle import VerifiedBundle

ACTION = 'Action::"dispense"'
MAX_PARTITIONS = 2048
MAX_MEMO = 8192  # remembered Cedar answers per engine (oldest dropped first)


@dataclass(frozen=True)
class RuleInfo:
    pid: str
    order: int
    rule_id: str
    outcome: str
    code: str | None
    citation: str | None
    message: str | None
    applies: str
    jurisdiction: str
    overridable: bool
    obligations: tuple[str, ...]
    cases: tuple[str, ...]
    effect: str

    def to_json(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "outcome": self.outcome, "code": self.code,
                "citation": self.citation, "applies": self.applies,
                "jurisdiction": self.jurisdiction, "overridable": self.overridable,
                "obligations": list(self.obligations), "cases": list(self.cases)}


@dataclass(frozen=True)
class LineResult:
    """What Cedar said about one line: the matched rules, or evaluation errors."""

    allowed: bool
    rules: tuple[RuleInfo, ...]
    errors: tuple[str, ...]

    # Results are remembered and shared by many decisions: what the gate reads of them is
    # worked out once per result.
    @cached_property
    def obligations(self) -> tuple[str, ...]:
        """The matched rules' obligations, in rule order."""
        return tuple(o for rule in self.rules for o in rule.obligations)

    @cached_property
    def reasons(self) -> tuple[RuleInfo, ...]:
        """The matched rules that give a reason (deny, hold, warn), in rule order."""
        return tuple(rule for rule in self.rules if rule.outcome in ("deny", "hold", "warn"))


@dataclass(frozen=True)
class Partition:
    """Compiled policies for one combination of jurisdiction, day and line flags.

    ``policies`` holds the base permit, every forbid and the conditional permits;
    ``static_permits`` are permits whose condition folded to true, reported whenever the
    line is allowed (exactly what Cedar would report). ``static`` is the whole answer when no
    condition is left to evaluate, so Cedar is not called for such lines."""

    policies: cedarpy.PolicySet
    pids: tuple[str, ...]
    attrs: frozenset[str]  # context attributes referenced (besides "f")
    flags: frozenset[str] | None  # flags tested with contains/containsAny; None = send all
    static_permits: tuple[RuleInfo, ...] = ()
    static: LineResult | None = None
    serial: int = 0  # unique per engine: keys remembered answers to this partition
    # no policy scopes or tests the principal or the resource: Cedar's answer does not
    # depend on who sells or which line it is, so remembered answers are shared
    anonymous: bool = False

    def context(self, full: Mapping[str, Any], flags: Iterable[str]) -> dict[str, Any]:
        ctx = {k: full[k] for k in self.attrs if k in full}
        if self.flags is None:
            ctx["f"] = list(flags)
        elif self.flags:
            ctx["f"] = list(self.flags.intersection(flags))
        return ctx


# ---- constant folding over Cedar's JSON policy format (EST) ----------------------------------
def _is_ctx_attr(node: Any, attr: str | None = None) -> bool:
    if not isinstance(node, dict) or "." not in node:
        return False
    inner = node["."]
    return inner.get("left") == {"Var": "context"} and (attr is None or inner.get("attr") == attr)


def _val(node: Any) -> Any:
    return node["Value"] if isinstance(node, dict) and "Value" in node else _NOVAL


_NOVAL = object()


class _Folder:
    def __init__(self, rules: frozenset[str], caps: Mapping[str, int],
                 flags: frozenset[str] | None) -> None:
        self.rules, self.caps, self.flags = rules, caps, flags

    def fold(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.fold(x) for x in node]
        if not isinstance(node, dict) or len(node) != 1:
            return node
        (op, arg), = node.items()
        if op == "contains" and _is_ctx_attr(arg.get("left"), "rules"):
            v = _val(arg.get("right"))
            if isinstance(v, str):
                return {"Value": v in self.rules}
        if self.flags is not None and op in ("contains", "containsAny") and _is_ctx_attr(
                arg.get("left"), "f"):
            right = arg.get("right")
            if op == "contains":
                v = _val(right)
                if isinstance(v, str):
                    return {"Value": v in self.flags}
            elif isinstance(right, dict) and isinstance(right.get("Set"), list):
                vals = [_val(x) for x in right["Set"]]
                if all(isinstance(x, str) for x in vals):
                    return {"Value": any(x in self.flags for x in vals)}
        if op == "." and _is_ctx_attr(node) and str(arg.get("attr", "")).startswith("cap_"):
            name = arg["attr"][4:]
            if name in self.caps:
                return {"Value": self.caps[name]}
            return node
        if op == "has" and arg.get("left") == {"Var": "context"} and str(
                arg.get("attr", "")).startswith("cap_"):
            return {"Value": arg["attr"][4:] in self.caps}
        if op in ("&&", "||"):
            left, right = self.fold(arg["left"]), self.fold(arg["right"])
            lv, rv = _val(left), _val(right)
            if op == "&&":
                if lv is False or rv is False:
                    return {"Value": False}
                if lv is True:
                    return right
                if rv is True:
                    return left
            else:
                if lv is True or rv is True:
                    return {"Value": True}
                if lv is False:
                    return right
                if rv is False:
                    return left
            return {op: {"left": left, "right": right}}
        if op == "!":
            inner = self.fold(arg["arg"])
            v = _val(inner)
            return {"Value": not v} if isinstance(v, bool) else {"!": {"arg": inner}}
        if op == "if-then-else":
            cond = self.fold(arg["if"])
            v = _val(cond)
            if v is True:
                return self.fold(arg["then"])
            if v is False:
                return self.fold(arg["else"])
            return {op: {"if": cond, "then": self.fold(arg["then"]),
                         "else": self.fold(arg["else"])}}
        if isinstance(arg, dict):
            return {op: {k: self.fold(v) for k, v in arg.items()}}
        if isinstance(arg, list):
            return {op: [self.fold(v) for v in arg]}
        return node


def _refs(node: Any, attrs: set[str], flags: set[str]) -> bool:
    """Collect referenced context attributes and tested flags; False if context.f is used in
    a way that needs the whole set."""
    ok = True
    if isinstance(node, list):
        for x in node:
            ok = _refs(x, attrs, flags) and ok
        return ok
    if not isinstance(node, dict):
        return True
    for op, arg in node.items():
        if op in ("contains", "containsAny") and isinstance(arg, dict) and _is_ctx_attr(
                arg.get("left"), "f"):
            right = arg.get("right")
            items = right.get("Set") if isinstance(right, dict) and "Set" in right else [right]
            for it in items or []:
                v = _val(it)
                if isinstance(v, str):
                    flags.add(v)
                else:
                    ok = False
            continue
        if op in (".", "has") and isinstance(arg, dict) and arg.get("left") == {
                "Var": "context"}:
            if arg.get("attr") == "f":
                ok = False
            else:
                attrs.add(str(arg.get("attr")))
            continue
        ok = _refs(arg, attrs, flags) and ok
    return ok


class PolicyEngine:
    def __init__(self, bundle: VerifiedBundle) -> None:
        self.bundle = bundle
        self.schema = cedarpy.Schema.from_str(bundle.schema_text)
        est = json.loads(cedarpy.policies_to_json_str(bundle.policy_text))
        self._est: dict[str, dict[str, Any]] = est["staticPolicies"]
        self.rules: dict[str, RuleInfo] = {}
        for pid, pol in self._est.items():
            ann: dict[str, str] = pol.get("annotations", {})
            self.rules[pid] = RuleInfo(
                pid=pid, order=int(pid.removeprefix("policy") or 0) if pid.startswith(
                    "policy") and pid[6:].isdigit() else 0,
                rule_id=ann["id"], outcome=ann["outcome"], code=ann.get("code"),
                citation=ann.get("citation"), message=ann.get("message"),
                applies=ann["applies"], jurisdiction=ann["jurisdiction"],
                overridable=ann.get("overridable", "").lower() == "true",
                obligations=tuple(o.strip() for o in ann.get("obligations", "").split(",")
                                  if o.strip()),
                cases=tuple(c.strip() for c in ann.get("rule", "").split(",") if c.strip()),
                effect=str(pol.get("effect")))
        self.full_set = cedarpy.PolicySet.from_str(bundle.policy_text)
        self._entities = cedarpy.Entities.from_json_str("[]")
        self._parts: dict[tuple[Any, ...], Partition] = {}
        self._memo: dict[tuple[Any, ...], LineResult] = {}
        self._by_active: dict[int, tuple[Any, dict[tuple[Any, ...], Partition]]] = {}
        self._serial = 0

    def __len__(self) -> int:
        return len(self.rules)

    def clear_memo(self) -> None:
        """Forget remembered Cedar answers (benchmarks: time a decision Cedar must make)."""
        self._memo.clear()

    def partitions_for(self, active: Any) -> dict[tuple[Any, ...], Partition]:
        """A lookup table of partitions for one ``Active`` (jurisdiction chain, rule packs and
        caps of a day), keyed by (tags, flags, permits_only): saves hashing the chain, rule
        packs and caps on every line. The table holds the Active so its id is not reused."""
        hit = self._by_active.get(id(active))
        if hit is None or hit[0] is not active:
            if len(self._by_active) >= 64:
                self._by_active.clear()
            hit = (active, {})
            self._by_active[id(active)] = hit
        return hit[1]

    def partition(self, chain: tuple[str, ...], tags: frozenset[str], rules: frozenset[str],
                  caps: tuple[tuple[str, int], ...], flags: frozenset[str] | None = None, *,
                  permits_only: bool = False) -> Partition:
        """The compiled policies for a jurisdiction chain, line tags, the rule packs and caps
        in force and (unless None) the line's flags; built once, then cached."""
        key = (chain, tags, rules, caps, flags, permits_only)
        part = self._parts.get(key)
        if part is None:
            part = self._build(chain, tags, rules, dict(caps), flags, permits_only)
            if len(self._parts) >= MAX_PARTITIONS:
                del self._parts[next(iter(self._parts))]
            self._parts[key] = part
        return part

    def unfolded(self, *, permits_only: bool = False) -> Partition:
        """Every policy of the bundle, uncompiled and unpartitioned (the reference evaluation
        that tests compare the compiled partitions with)."""
        key = ("unfolded", permits_only)
        part = self._parts.get(key)
        if part is None:
            chosen = {pid: pol for pid, pol in self._est.items()
                      if not (permits_only and self.rules[pid].effect != "permit")}
            ps = cedarpy.PolicySet.from_json_str(json.dumps(
                {"staticPolicies": chosen, "templates": {}, "templateLinks": []}))
            self._serial += 1
            part = Partition(ps, tuple(chosen), frozenset(), None, serial=self._serial)
            self._parts[key] = part
        return part

    def _build(self, chain: tuple[str, ...], tags: frozenset[str], rules: frozenset[str],
               caps: dict[str, int], flags: frozenset[str] | None,
               permits_only: bool) -> Partition:
        juris = {"*", *chain}
        folder = _Folder(rules, caps, flags)
        chosen: dict[str, Any] = {}
        attrs: set[str] = set()
        tested: set[str] = set()
        whole_f = False
        static_permits: list[RuleInfo] = []
        static_forbids: list[RuleInfo] = []
        conditional = 0
        for pid, pol in self._est.items():
            info = self.rules[pid]
            if info.applies not in tags or info.jurisdiction not in juris:
                continue
            if permits_only and info.effect != "permit":
                continue
            conditions = []
            dead = False
            for cond in pol.get("conditions", []):
                body = folder.fold(cond["body"])
                v = _val(body)
                if (cond["kind"] == "when" and v is False) or (cond["kind"] == "unless"
                                                               and v is True):
                    dead = True
                    break
                if (cond["kind"] == "when" and v is True) or (cond["kind"] == "unless"
                                                              and v is False):
                    continue
                conditions.append({"kind": cond["kind"], "body": body})
            if dead:
                continue
            if not conditions and info.effect == "permit" and info.outcome != "base":
                static_permits.append(info)
                continue
            if conditions:
                conditional += 1
            elif info.effect == "forbid":
                static_forbids.append(info)
            if not _refs(conditions, attrs, tested):
                whole_f = True
            chosen[pid] = {**pol, "conditions": conditions}
        ps = cedarpy.PolicySet.from_json_str(json.dumps(
            {"staticPolicies": chosen, "templates": {}, "templateLinks": []}))
        has_base = any(self.rules[pid].outcome == "base" for pid in chosen)
        static = None
        if conditional == 0:
            if static_forbids:
                static = LineResult(False, tuple(static_forbids), ())
            elif has_base or static_permits:
                static = LineResult(True, tuple(static_permits), ())
            else:
                static = LineResult(False, (), ())
        self._serial += 1
        anonymous = all(pol.get("principal") == {"op": "All"} and pol.get("resource") == {
            "op": "All"} and not _uses_var(pol["conditions"], ("principal", "resource"))
            for pol in chosen.values())
        return Partition(ps, tuple(chosen), frozenset(attrs - {"f"}),
                         None if whole_f else frozenset(tested), tuple(static_permits), static,
                         self._serial, anonymous)

    def evaluate(self, batches: Iterable[tuple[Partition, Sequence[dict[str, Any]]]],
                 *, validate: bool = False) -> list[LineResult]:
        """Evaluate groups of requests (one group per partition), results in input order.

        Cedar's answer is a pure function of the policy set and the request (entities are
        always empty), so answers to compiled partitions are remembered per (partition,
        principal, resource, context): a request seen before is not sent to Cedar again.
        (cedarpy's batch call costs about one single call per request, so the requests of
        different partitions are not merged into one call.)"""
        out: list[LineResult] = []
        schema = self.schema if validate else None
        memo = self._memo
        for part, requests in batches:
            if part.static is not None and not validate:
                out.extend(part.static for _ in requests)
                continue
            if validate:
                out.extend(self._cedar(part, requests, schema))
                continue
            if len(requests) == 1:  # the common case: one line of this partition
                k = _memo_key(part.serial, requests[0], part.anonymous)
                h = None if k is None else memo.get(k)
                if h is None:
                    h = self._cedar(part, requests, None)[0]
                    if k is not None:
                        self._remember(k, h)
                out.append(h)
                continue
            keys = [_memo_key(part.serial, r, part.anonymous) for r in requests]
            hits = [memo.get(k) if k is not None else None for k in keys]
            missing = [i for i, h in enumerate(hits) if h is None]
            if missing:
                fresh = self._cedar(part, [requests[i] for i in missing], None)
                for i, res in zip(missing, fresh, strict=True):
                    hits[i] = res
                    k = keys[i]
                    if k is not None:
                        self._remember(k, res)
            out.extend(h for h in hits if h is not None)
        return out

    def _remember(self, key: tuple[Any, ...], result: LineResult) -> None:
        memo = self._memo
        while memo and len(memo) >= MAX_MEMO:
            del memo[next(iter(memo))]
        memo[key] = result

    def _cedar(self, part: Partition, requests: Sequence[dict[str, Any]],
               schema: cedarpy.Schema | None) -> list[LineResult]:
        rules = self.rules
        out: list[LineResult] = []
        results = cedarpy.is_authorized_batch(list(requests), part.policies, self._entities,
                                              schema)
        for res in results:
            diag = res.diagnostics
            matched = [rules[pid] for pid in diag.reasons if pid in rules]
            if res.allowed:
                matched.extend(part.static_permits)
            if len(matched) > 1:
                matched.sort(key=_order)
            out.append(LineResult(res.allowed, tuple(matched),
                                  tuple(str(e) for e in diag.errors)))
        return out

    def describe(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in sorted(self.rules.values(), key=lambda r: r.order)]


def _order(r: RuleInfo) -> int:
    return r.order


def _uses_var(node: Any, names: tuple[str, ...]) -> bool:
    if isinstance(node, list):
        return any(_uses_var(x, names) for x in node)
    if isinstance(node, dict):
        return node.get("Var") in names or any(_uses_var(x, names) for x in node.values())
    return False


_SCALARS = frozenset((str, int, bool))


def _memo_key(serial: int, request: Mapping[str, Any], anonymous: bool = False
              ) -> tuple[Any, ...] | None:
    """A hashable key for a Cedar request built by ``cedar_request``, or None when the
    context holds something other than strings, integers, booleans and sets of strings.
    Types are part of the key (Cedar tells ``true`` from ``1``); sets are order-free. Keys
    keep the context's order: the same context built in another order is only a miss."""
    ctx, who, what = request.get("context"), request.get("principal"), request.get("resource")
    if not (isinstance(ctx, dict) and isinstance(who, dict) and isinstance(what, dict)):
        return None
    # the context as its names, its values' types and its values (a list as a frozenset)
    values = tuple(ctx.values())
    types = tuple(map(type, values))
    if not _SCALARS.issuperset(types):  # a list (of flags), or a value that is not remembered
        vals: list[Any] = []
        for v, t in zip(values, types, strict=True):
            if t in _SCALARS:
                vals.append(v)
            elif t is list and all(type(x) is str for x in v):
                vals.append(frozenset(v))
            else:
                return None
        values = tuple(vals)
        types = tuple(frozenset if t is list else t for t in types)
    body = (tuple(ctx), types, values)
    if anonymous:  # the partition's policies look at neither: any principal, any line
        return (serial, request.get("action"), body)
    return (serial, request.get("action"), who.get("type"), who.get("id"), what.get("type"),
            what.get("id"), body)


def cedar_request(user_id: str, line_no: int, context: dict[str, Any]) -> dict[str, Any]:
    return {"principal": {"type": "User", "id": user_id}, "action": ACTION,
            "resource": {"type": "Line", "id": str(line_no)}, "context": context}
