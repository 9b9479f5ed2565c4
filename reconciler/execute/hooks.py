"""Snapshot hooks while applying: which hooks of a filesystem were entered, and running one.

A filesystem's hooks (its policy's ``snapshots.hooks``) are entered in configuration
order, like zrepl's: a hook is entered when its pre hook runs, whatever its result, or,
when it has no pre hook, when the filesystem's hooks began (a pre hook or the snapshot
was attempted) and no earlier pre hook failed with ``err_is_fatal``. A post hook runs
exactly when its hook was entered: also when its own pre hook failed (zrepl #392: a
``db-freeze`` that timed out may still have frozen the database) or the snapshot failed,
and also after a stop request (a freeze must be undone); not for a hook cut off by an
earlier fatal pre hook, nor for a filesystem skipped before its hooks began.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from reconciler.codes import ZfsError
from reconciler.domain.actions import Action, HookAction, PostHookAction, PreHookAction, SnapshotAction
from reconciler.errors import ExecError, clip
from reconciler.transport.interface import CommandResult, Executor

SnapshotKey = tuple[str, str, str]  # (host, dataset, snapshot)

# Of a failed hook's output, the last this many characters go into the report.
OUTPUT_SHOWN = 500


@dataclass(slots=True)
class HookPhase:
    """One filesystem's hooks around one snapshot, as apply goes through them."""

    with_pre: frozenset[int]  # the hooks (by index) that have a pre hook
    began: bool = False  # a pre hook or the snapshot was attempted
    ran_pre: set[int] = field(default_factory=set)
    cut: int | None = None  # hooks from this index on are not entered

    def entered(self, hook: int) -> bool:
        if hook in self.with_pre:
            return hook in self.ran_pre
        return self.began and (self.cut is None or hook < self.cut)

    def pre_attempted(self, hook: int, fatal_failure: bool) -> None:
        self.began = True
        self.ran_pre.add(hook)
        if fatal_failure:
            self.cut_at(hook + 1)

    def pre_skipped(self, hook: int) -> None:
        self.cut_at(hook)

    def cut_at(self, hook: int) -> None:
        self.cut = hook if self.cut is None else min(self.cut, hook)


def hook_phases(actions: Iterable[Action]) -> dict[SnapshotKey, HookPhase]:
    """A HookPhase for every snapshot that has hooks in ``actions``."""
    with_pre: dict[SnapshotKey, set[int]] = {}
    for action in actions:
        if isinstance(action, PreHookAction | PostHookAction):
            hooks = with_pre.setdefault(action.snapshot_key(), set())
            if isinstance(action, PreHookAction):
                hooks.add(action.hook)
    return {key: HookPhase(frozenset(hooks)) for key, hooks in with_pre.items()}


def snapshot_key(action: SnapshotAction) -> SnapshotKey:
    return action.host, action.dataset, action.snapshot


def run_hook(executor: Executor, action: HookAction) -> CommandResult:
    """Run the hook on its host; ExecError when it exits non-zero (TransportError, from the
    executor, when it timed out or the host could not be reached)."""
    result = executor.run_hook(action.command, action.env(), action.timeout)
    if not result.ok:
        raise ExecError(f"exited with status {result.returncode}{output_tail(result)}",
                        code=ZfsError.COMMAND_FAILED, stderr=result.stderr)
    return result


def output_tail(result: CommandResult) -> str:
    """``: <the end of what it printed>`` (stderr, else stdout), or "" when it printed nothing."""
    text = (result.stderr.strip() or result.stdout.strip())[-OUTPUT_SHOWN:]
    return f": {clip(text)}" if text else ""
