"""Verify, then run: a saved plan runs only if it is exactly what the planner computes now.

``apply --plan FILE`` re-gathers the facts and recomputes the plan at the file's ``now``
and selection with the current configuration. The saved plan is refused unless

- its fingerprint (configuration + the facts the plan depends on) is the recomputed one
  (a changed fact is "stale", as Terraform refuses a stale saved plan), and
- its actions are, in order, the recomputed actions: same kinds, hosts, datasets,
  snapshot lists, bases, targets and flags.

Wording is not compared: an action's ``reason``, a destroy's ``reasons`` per name, and a
send's ``estimated_bytes`` (a size estimate that moves with every write to the source and
that apply replaces with ``zfs send -nP`` anyway). The file's digest already proves that
its wording is what the planner wrote; a newer version may word the same decision
differently, and a reason never changes what runs. What runs is the recomputed plan.

The refusal says why (the configuration changed, the facts changed: "stale", another
tool version computed it, or the file was edited) and lists the first differences.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from reconciler import __version__
from reconciler.domain.plan import NOW_FORMAT, Plan
from reconciler.errors import StalePlanError

WORDING_KEYS = frozenset({"reason", "reasons", "estimated_bytes"})
SHOWN_DIFFERENCES = 5
SHOWN_NAMES = 4
# A saved plan computed for a later time than this machine's clock plus this skew is
# refused: its snapshots would be named, and retention judged, for a time not yet come.
CLOCK_SKEW = timedelta(minutes=5)


def check_plan_time(path: str, saved: datetime, now: datetime) -> None:
    if saved > now + CLOCK_SKEW:
        raise StalePlanError(
            f"the saved plan {path} was computed for {saved.strftime(NOW_FORMAT)}, later than this machine's"
            f" clock ({now.strftime(NOW_FORMAT)}); a saved plan runs only at or after its own time: run"
            " `zrepl-reconcile plan --out` again without --now, or fix the clock")


def comparable(action: Mapping[str, Any]) -> dict[str, Any]:
    """An action's Plan JSON without its wording: what decides what runs."""
    return {key: value for key, value in action.items() if key not in WORDING_KEYS}


def action_label(action: Mapping[str, Any]) -> str:
    """``kind host:dataset`` (``-> target`` for a send), for a difference line."""
    label = f"{action.get('kind')} {action.get('host')}:{action.get('dataset')}"
    target = action.get("target")
    if isinstance(target, Mapping):
        label += f" -> {target.get('host')}:{target.get('dataset')}"
    if isinstance(action.get("snapshot"), str) and action.get("kind") != "send":
        label += f"@{action['snapshot']}"
    if isinstance(action.get("bookmark"), str):
        label += f" as {action['bookmark']}"
    return label


def identity(action: Mapping[str, Any]) -> str:
    """What one action is about (two differing actions with the same identity are one change)."""
    target = action.get("target")
    target_text = f"{target.get('host')}:{target.get('dataset')}" if isinstance(target, Mapping) else ""
    return f"{action.get('kind')}\0{action.get('host')}\0{action.get('dataset')}\0{target_text}"


def action_differences(saved: Iterable[Mapping[str, Any]], current: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per difference between the file's actions and the recomputed ones, in plan order."""
    saved_list = [comparable(a) for a in saved]
    current_list = [comparable(a) for a in current]
    if saved_list == current_list:
        return []
    by_identity: dict[str, list[dict[str, Any]]] = {}
    for action in current_list:
        by_identity.setdefault(identity(action), []).append(action)
    lines: list[str] = []
    matched: set[int] = set()
    for action in saved_list:
        candidates = by_identity.get(identity(action), [])
        twin = next((c for c in candidates if id(c) not in matched and c == action), None)
        if twin is None:
            twin = next((c for c in candidates if id(c) not in matched), None)
        if twin is None:
            lines.append(f"in the file, not computed now: {action_label(action)}")
            continue
        matched.add(id(twin))
        if twin != action:
            lines.append(f"{action_label(action)}: {field_differences(action, twin)}")
    lines += [f"computed now, not in the file: {action_label(a)}"
              for a in current_list if id(a) not in matched]
    if not lines:
        lines.append("the same actions in another order")
    return lines


def field_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    parts = []
    for key in [*saved, *(k for k in current if k not in saved)]:
        old, new = saved.get(key), current.get(key)
        if old == new:
            continue
        if isinstance(old, list) and isinstance(new, list):
            extra = [n for n in old if n not in new]
            missing = [n for n in new if n not in old]
            words = []
            if extra:
                words.append(f"the file adds {names_text(extra)}")
            if missing:
                words.append(f"the file lacks {names_text(missing)}")
            parts.append(f"{key}: {'; '.join(words) or 'another order'}")
        else:
            parts.append(f"{key}: the file has {short(old)}, computed now {short(new)}")
    return "; ".join(parts)


def names_text(names: list[Any]) -> str:
    shown = ", ".join(short(n) for n in names[:SHOWN_NAMES])
    return shown + (f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else "")


def short(value: Any, limit: int = 80) -> str:
    pairs = value.items() if isinstance(value, Mapping) else None
    text = ", ".join(f"{k}={v!r}" for k, v in pairs) if pairs is not None else repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def refusal(path: str, saved: Plan, saved_actions: list[Mapping[str, Any]],
            current: Plan) -> StalePlanError | None:
    """None when ``current`` (recomputed) is exactly the saved plan; else the error that says why not."""
    differences = action_differences(saved_actions, (a.to_json() for a in current.actions))
    if saved.fingerprint == current.fingerprint and not differences:
        return None
    if saved.config_digest != current.config_digest:
        cause = ("is stale: the configuration changed since it was computed (the ZFS facts may have"
                 " too)")
    elif saved.fingerprint != current.fingerprint:
        cause = ("is stale: the ZFS facts changed since it was computed (fingerprint"
                 f" {saved.fingerprint[:19]}… now {current.fingerprint[:19]}…)")
    elif saved.tool_version != current.tool_version:
        cause = (f"was computed by zrepl-reconcile {saved.tool_version}; this is {__version__}, which"
                 " computes other actions from the same configuration and facts")
    else:
        cause = ("was edited: its actions are not what the planner computes from the same configuration"
                 " and facts (and its digest was rewritten to match)")
    lines = [f"the saved plan {path} {cause}; nothing was changed. Run `zrepl-reconcile plan --out` again"
             " and review the new plan"]
    if differences:
        shown = differences[:SHOWN_DIFFERENCES]
        more = len(differences) - len(shown)
        lines.append(f"  {len(differences)} difference(s) from the plan computed now"
                     f"{f' (the first {len(shown)})' if more else ''}:")
        lines += [f"    {line}" for line in shown]
    return StalePlanError("\n".join(lines))
