"""The desired state as frozen pydantic models (``extra="forbid"`` everywhere).

These validate *meaning* for one object at a time; cross references (undefined
hosts/policies, a target on its own host and pool path, filter conflicts) are checked
in ``reconciler.config.load`` where YAML positions are known.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from reconciler.config.grid import GridInterval, parse_duration, parse_grid
from reconciler.config.rates import RATE_EXAMPLE, parse_rate
from reconciler.domain.names import (
    SNAPSHOT_NAME_CHARS,
    check_dataset_name,
    filter_decision,
    is_within,
    scheduled_snapshot_name,
)
from reconciler.domain.properties import (
    RAW_REFUSED,
    SAFE_EXCLUDES_WITH_SEND_PROPERTIES,
    SAFE_OVERRIDES,
    check_property_name,
    for_kind,
)

HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _check(parse: Callable[[str], object]) -> AfterValidator:
    """A validator that keeps the text as written once ``parse`` accepts it (its ValueError
    is the field's error); the models parse it again where they use the value."""
    def check(value: str) -> str:
        parse(value)
        return value
    return AfterValidator(check)


# A length of time (10m, 1h, 1d; units s m h d w) and a rate (20MiB/s), kept as written.
Duration = Annotated[str, _check(parse_duration)]
Rate = Annotated[str, _check(parse_rate)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_filter_key(key: str) -> str:
    """A zrepl filter key: a dataset name, with a trailing '<' for "this dataset and its children"."""
    if key == "<":
        # zrepl reads a bare '<' as "every dataset of every pool"; too easy to claim a
        # replica or a foreign pool by accident, so we ask for the pool by name.
        raise ValueError("a bare '<' (every dataset) is not supported: name the pool, e.g. 'tank<'")
    check_dataset_name(key[:-1] if key.endswith("<") else key)
    return key


def check_command(argv: list[str]) -> list[str]:
    if any(not part for part in argv):
        raise ValueError("command words must not be empty strings")
    if any("\0" in part for part in argv):
        raise ValueError("command words must not contain a NUL character (no argv can carry one)")
    return argv


def check_ssh_client_path(value: str) -> str:
    """A path the OpenSSH client (bulk sends) must read as literally as paramiko does.

    ssh expands ``%h``-style tokens and ``${VAR}`` in identity and known_hosts files;
    paramiko does not, so the two would read different files. ``$(...)`` is expanded by
    neither (no shell is involved), so it stays a literal part of the name.
    """
    if "%" in value:
        raise ValueError(f"{value!r} contains '%', which the OpenSSH client (bulk sends) expands as a "
                         "token: write the path without '%'")
    if "${" in value:
        raise ValueError(f"{value!r} contains '${{', which the OpenSSH client (bulk sends) expands as an "
                         "environment variable: write the path out")
    return value


def check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


# A zfs_command starting with one of these runs zfs as root, whoever runs it.
ROOT_WRAPPERS = frozenset({"sudo", "doas"})


def wrapped_as_root(zfs_command: Sequence[str]) -> bool:
    """``zfs_command`` runs zfs through sudo or doas (named or by path)."""
    return bool(zfs_command) and zfs_command[0].rsplit("/", 1)[-1] in ROOT_WRAPPERS


class LocalHost(Model):
    connection: Literal["local"] = Field(description="run zfs on this machine")
    zfs_command: list[str] = Field(default_factory=lambda: ["zfs"], min_length=1,
                                   description="argv prefix for zfs, e.g. [sudo, -n, zfs]")
    command_timeout: float = Field(default=600.0, gt=0, allow_inf_nan=False,
                                   description="seconds per zfs command")
    channel_programs: Literal["auto", "off"] = Field(
        default="auto",
        description="cursor bookmarks and snapshot destroys as one `zfs program` (Lua channel program) per"
                    " pool: auto uses it where zfs runs as root on that host (the controller runs as root,"
                    " or zfs_command starting with sudo or doas) and falls back to one command per"
                    " action when zfs refuses it; off: always one command per action (delegated,"
                    " non-root users)")

    @field_validator("zfs_command")
    @classmethod
    def _zfs_command(cls, v: list[str]) -> list[str]:
        return check_command(v)


class SshHost(Model):
    connection: Literal["ssh"] = Field(description="run zfs over SSH (strict host key checking)")
    address: str = Field(description="host name or IP address")
    port: int = Field(default=22, ge=1, le=65535)
    user: str = "root"
    identity_file: str | None = Field(default=None, description="private key; default: keys from the agent")
    known_hosts: str = Field(default="~/.ssh/known_hosts",
                             description="pinned host keys; an unknown or changed key is refused")
    zfs_command: list[str] = Field(default_factory=lambda: ["zfs"], min_length=1,
                                   description="argv prefix for zfs on that host, e.g. [sudo, -n, zfs]")
    connect_timeout: float = Field(default=10.0, gt=0, allow_inf_nan=False, description="seconds")
    command_timeout: float = Field(default=600.0, gt=0, allow_inf_nan=False,
                                   description="seconds per zfs command")
    channel_programs: Literal["auto", "off"] = Field(
        default="auto",
        description="cursor bookmarks and snapshot destroys as one `zfs program` (Lua channel program) per"
                    " pool: auto uses it where zfs runs as root on that host (user: root,"
                    " or zfs_command starting with sudo or doas) and falls back to one command per"
                    " action when zfs refuses it; off: always one command per action (delegated,"
                    " non-root users)")

    @field_validator("zfs_command")
    @classmethod
    def _zfs_command(cls, v: list[str]) -> list[str]:
        return check_command(v)

    @field_validator("identity_file")
    @classmethod
    def _identity_file(cls, v: str | None) -> str | None:
        if v == "":
            raise ValueError("must not be empty: leave identity_file out to use the SSH agent's keys")
        return v if v is None else check_ssh_client_path(v)

    @field_validator("known_hosts")
    @classmethod
    def _known_hosts(cls, v: str) -> str:
        if not v:
            raise ValueError("must not be empty: leave known_hosts out for ~/.ssh/known_hosts")
        return check_ssh_client_path(v)

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z0-9_.:\-\[\]]+$", v):
            raise ValueError(f"{v!r} is not a host name or IP address")
        return v

    @field_validator("user")
    @classmethod
    def _user(cls, v: str) -> str:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]*$", v):
            raise ValueError(f"{v!r} is not a valid user name")
        return v


HostConfig = Annotated[LocalHost | SshHost, Field(discriminator="connection")]


# zrepl's default hook timeout.
DEFAULT_HOOK_TIMEOUT = "30s"


def check_hook_command(argv: list[str]) -> list[str]:
    """A hook's argv: a command word and its arguments, as for every other argv field.

    Over SSH the hook's environment travels as ``env NAME=value ... argv`` (sshd accepts
    no variables unless AcceptEnv says so): ``env`` would read a first word with ``=``
    in it as one more variable, so such a word is refused here."""
    check_command(argv)
    if "=" in argv[0]:
        raise ValueError(f"the command word {argv[0]!r} contains '=': env, which passes the hook's"
                         " variables over SSH, would read it as one more variable")
    return argv


class SnapshotHook(Model):
    """Commands run before (pre) and after (post) each snapshot of a filesystem, on its host."""

    pre: list[str] | None = Field(
        default=None, min_length=1,
        description="command (argv, no shell) run before the snapshot, e.g. [/usr/local/sbin/db-freeze]")
    post: list[str] | None = Field(
        default=None, min_length=1,
        description="command (argv, no shell) run after the snapshot, also when pre failed,"
                    " e.g. [/usr/local/sbin/db-thaw]")
    timeout: Duration = Field(
        default=DEFAULT_HOOK_TIMEOUT,
        description="a hook still running after this long is killed and counts as failed (e.g. 30s, 2m)")
    err_is_fatal: bool = Field(
        default=False,
        description="a failing pre skips this filesystem's snapshot (and what depends on it); false:"
                    " the failure is reported and the snapshot taken anyway (zrepl's default)")

    @field_validator("pre", "post")
    @classmethod
    def _command(cls, v: list[str] | None) -> list[str] | None:
        return v if v is None else check_hook_command(v)

    @model_validator(mode="after")
    def _pre_or_post(self) -> SnapshotHook:
        if self.pre is None and self.post is None:
            raise ValueError("a hook needs pre, post or both")
        return self

    @property
    def timeout_seconds(self) -> int:
        return int(parse_duration(self.timeout).total_seconds())


class SnapshotSchedule(Model):
    prefix: str = Field(min_length=1, description="snapshots are named <prefix><UTC timestamp>")
    interval: Duration = Field(description="e.g. 10m, 1h, 1d; units s m h d w")
    hooks: list[SnapshotHook] = Field(
        default_factory=list,
        description="commands run on the filesystem's host around each of its snapshots: every pre in"
                    " this order, the snapshot, every post in reverse order; a filesystem with hooks is"
                    " snapshotted on its own, not in its pool's atomic batch")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not SNAPSHOT_NAME_CHARS.match(v):
            raise ValueError(f"prefix {v!r} may contain only letters, digits, '_', '-', ':', '.', ' '")
        return v

    @property
    def interval_delta(self) -> timedelta:
        return parse_duration(self.interval)


Regex = Annotated[str, AfterValidator(check_regex)]  # a Python regex, checked to compile


class KeepGrid(Model):
    type: Literal["grid"]
    grid: str = Field(description="zrepl grid, e.g. '1x1h(keep=all) | 24x1h | 14x1d'")
    regex: Regex = Field(default=".*", description="only snapshots whose name matches take part")

    @field_validator("grid")
    @classmethod
    def _grid(cls, v: str) -> str:
        parse_grid(v)
        return v

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str) -> str:
        if not v:  # zrepl's NewKeepGrid: "Regex must not be empty"
            raise ValueError("a grid rule's regex must not be empty (as in zrepl); leave regex out to"
                             " match every snapshot")
        return v

    @property
    def intervals(self) -> tuple[GridInterval, ...]:
        return parse_grid(self.grid)


class KeepLastN(Model):
    type: Literal["last_n"]
    # zrepl reads the count into a Go int: 64 bits.
    count: int = Field(ge=1, le=2**63 - 1, description="keep the newest N matching snapshots")
    regex: Regex = Field(default=".*", description="only snapshots whose name matches take part")


class KeepRegex(Model):
    type: Literal["regex"]
    regex: Regex = Field(description="keep snapshots whose name matches")
    negate: bool = Field(default=False, description="keep those that do NOT match instead")


class KeepNotReplicated(Model):
    type: Literal["not_replicated"]
    keep_snapshot_at_cursor: bool = Field(
        default=True, description="also keep the newest replicated snapshot (the replication cursor's, "
                                  "the next incremental base), as zrepl does by default")


KeepRule = Annotated[KeepGrid | KeepLastN | KeepRegex | KeepNotReplicated, Field(discriminator="type")]


class Policy(Model):
    snapshots: SnapshotSchedule | None = None
    manage: str | None = Field(
        default=None, description="regex of snapshot names this policy may destroy; default ^<prefix>")
    keep_source: list[KeepRule] = Field(
        default_factory=list,
        description="a snapshot is kept if any rule keeps it; without not_replicated, pruning wins "
                    "over stalled replication; empty keeps everything")
    keep_target: list[KeepRule] = Field(
        default_factory=list, description="retention on the targets; empty keeps everything")

    @field_validator("manage")
    @classmethod
    def _manage(cls, v: str | None) -> str | None:
        if v == "":
            raise ValueError("must not be empty: an empty regex matches every snapshot; write '.*' if this"
                             " policy may really destroy any snapshot")
        return v if v is None else check_regex(v)

    @model_validator(mode="after")
    def _manage_needed(self) -> Policy:
        if self.manage is None and self.snapshots is None and (self.keep_source or self.keep_target):
            raise ValueError("manage is required when the policy has keep rules but no snapshots.prefix")
        if self.manage is not None and self.snapshots is not None:
            # The schedule looks only at managed snapshots: names manage misses would be
            # taken again on every run and never pruned.
            sample = scheduled_snapshot_name(self.snapshots.prefix, datetime(2026, 11, 24, 12, tzinfo=UTC))
            if re.search(self.manage, sample) is None:
                raise ValueError(f"manage {self.manage!r} does not match the names this policy's snapshots"
                                 f" get (e.g. {sample!r}): every run would take another snapshot and none"
                                 " would ever be pruned; make manage match snapshots.prefix")
        return self

    @property
    def manage_regex(self) -> str:
        if self.manage is not None:
            return self.manage
        if self.snapshots is not None:
            return "^" + re.escape(self.snapshots.prefix)
        return r"(?!)"  # matches nothing: a policy without prefix or manage destroys nothing

    @property
    def protects_unreplicated(self) -> bool:
        """True when keep_source contains not_replicated (the rule from zrepl's history)."""
        return any(isinstance(r, KeepNotReplicated) for r in self.keep_source)

    @property
    def keeps_snapshot_at_cursor(self) -> bool:
        """zrepl's pruner: the cursor's snapshot counts as replicated only when some
        not_replicated rule sets keep_snapshot_at_cursor: false."""
        rules = [r for r in self.keep_source if isinstance(r, KeepNotReplicated)]
        return bool(rules) and all(r.keep_snapshot_at_cursor for r in rules)


# A stalled transfer is given up after this long (zrepl has no such timeout; syncoid's
# mbuffer none either: a hung link blocks them until someone notices).
DEFAULT_STALL_TIMEOUT = "10m"

ProtectionLevel = Literal["guarantee_resumability", "guarantee_incremental", "guarantee_nothing"]
# zrepl's default for both, kept after measuring its cost in benchmark (b) (BENCHMARKS.md).
DEFAULT_PROTECTION: ProtectionLevel = "guarantee_resumability"


class Protection(Model):
    """zrepl's ``replication.protection``: what is held so that replication can go on."""

    initial: ProtectionLevel = Field(
        default=DEFAULT_PROTECTION,
        description="for a full (initial) send: guarantee_resumability holds the send's snapshot on the"
                    " source until it arrived; guarantee_incremental and guarantee_nothing place no hold")
    incremental: ProtectionLevel = Field(
        default=DEFAULT_PROTECTION,
        description="for incremental sends: guarantee_resumability holds each send's snapshots on the source"
                    " until they arrived, and (as guarantee_incremental) the last received snapshot on the"
                    " target (the next incremental base); guarantee_nothing places no hold")


PropertyName = Annotated[str, AfterValidator(check_property_name)]


class ReceiveProperties(Model):
    """``zfs recv -o``/``-x``, applied on every receive into the target (resumed ones too)."""

    override: dict[PropertyName, str] = Field(
        default_factory=dict,
        description="zfs recv -o NAME=VALUE; merged over the safe defaults readonly=on and (filesystems)"
                    " canmount=noauto, which a name listed here or in exclude replaces")
    exclude: list[PropertyName] | None = Field(
        default=None,
        description="zfs recv -x NAME: the replica inherits it instead; default: mountpoint, sharenfs and"
                    " sharesmb with send_properties, none without")

    @field_validator("override")
    @classmethod
    def _values(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not value or "\n" in value or "\0" in value:
                raise ValueError(f"the value of {name!r} must be a non-empty line of text")
        return v

    @model_validator(mode="after")
    def _disjoint(self) -> ReceiveProperties:
        both = sorted(set(self.override) & set(self.exclude or ()))
        if both:
            raise ValueError(f"{', '.join(both)} is both overridden and excluded: keep one")
        if self.exclude is not None and len(set(self.exclude)) != len(self.exclude):
            raise ValueError("exclude names a property twice")
        return self


class Target(Model):
    host: str = Field(description="name of a host in hosts")
    root: str = Field(description="dataset under which the source path is recreated: root/<source dataset>"
                                  " (root/<path below strip> with strip)")
    initial: Literal["newest", "all"] = Field(
        default="newest",
        description="first full send: the newest snapshot only (zrepl's default), or all of them")
    raw: bool | None = Field(
        default=None,
        description="raw send (zfs send -w): encrypted data stays encrypted and its key is never loaded on"
                    " the target. Unset: an encrypted source is refused (conflict unencrypted_replica);"
                    " false: replicate decrypted on purpose (the plan warns every run)")
    compressed: bool = Field(
        default=True,
        description="non-raw sends as compressed streams (zfs send -L -c -e: blocks travel as stored,"
                    " compressed, large blocks kept); false: a plain stream. A replica received with large"
                    " blocks needs -L on every later send: turning this off for it is a conflict")
    bandwidth_limit: Rate | None = Field(
        default=None,
        description=f"at most this many bytes per second for the sends to this target, {RATE_EXAMPLE}"
                    " (B/s, KiB/s, MiB/s, GiB/s; K, M, G); parallel sends to the same target host with the"
                    " same limit share it; absent: unlimited")
    stall_timeout: Duration = Field(
        default=DEFAULT_STALL_TIMEOUT,
        description="a transfer that moves no byte for this long is stopped (the receive stays resumable"
                    " and the next run resumes it), e.g. 10m, 1h")
    strip: str | None = Field(
        default=None,
        description="a prefix of every selected dataset, left out of the replica's name: with strip: tank,"
                    " tank/data/x -> root/data/x (and tank itself -> root)")
    properties: ReceiveProperties = Field(
        default_factory=ReceiveProperties,
        description="properties set (zfs recv -o) or excluded (zfs recv -x) on every receive")
    send_properties: bool = Field(
        default=False, description="zfs send -p: the source's properties travel with the stream")
    protection: Protection = Field(
        default_factory=Protection,
        description="zrepl's protection levels: which holds keep replication going")

    @field_validator("root")
    @classmethod
    def _root(cls, v: str) -> str:
        return check_dataset_name(v)

    @property
    def bandwidth_limit_bytes(self) -> int | None:
        """``bandwidth_limit`` in bytes per second; None: unlimited."""
        return parse_rate(self.bandwidth_limit) if self.bandwidth_limit is not None else None

    @property
    def stall_timeout_seconds(self) -> int:
        return int(parse_duration(self.stall_timeout).total_seconds())

    @property
    def large_blocks(self) -> bool:
        """Whether its sends keep large blocks (-L): compressed streams, and raw ones (-w implies it)."""
        return self.sends_raw or self.compressed
    @field_validator("strip")
    @classmethod
    def _strip(cls, v: str | None) -> str | None:
        return v if v is None else check_dataset_name(v)

    @model_validator(mode="after")
    def _raw_properties(self) -> Target:
        named = sorted((set(self.properties.override) | set(self.properties.exclude or ())) & RAW_REFUSED)
        if self.raw and named:
            raise ValueError(f"a raw receive cannot set or exclude {', '.join(named)} (zfs refuses it:"
                             " \"encryption property cannot be set or excluded for raw streams\"); remove"
                             " it from properties")
        return self

    @property
    def sends_raw(self) -> bool:
        return bool(self.raw)

    def maps(self, source_dataset: str) -> bool:
        """Whether ``source_dataset`` has a replica name here (it lies within ``strip``)."""
        return self.strip is None or is_within(source_dataset, self.strip)

    def target_dataset(self, source_dataset: str) -> str:
        """The replica's name: ``root/<source>``, or with ``strip`` ``root/<source below strip>``
        (``strip`` itself maps to ``root``). ValueError for a dataset outside ``strip`` (loading
        refuses a filter that selects one)."""
        if self.strip is None:
            return f"{self.root}/{source_dataset}"
        if source_dataset == self.strip:
            return self.root
        if not source_dataset.startswith(self.strip + "/"):
            raise ValueError(f"{source_dataset} does not lie within strip {self.strip!r}")
        return f"{self.root}/{source_dataset[len(self.strip) + 1:]}"

    def source_dataset(self, target_dataset: str) -> str | None:
        """The source dataset whose replica ``target_dataset`` would be (the inverse of
        ``target_dataset``), or None when it does not lie below the root (or is not the
        root itself, with ``strip``)."""
        if self.strip is not None and target_dataset == self.root:
            return self.strip
        prefix = self.root + "/"
        if not target_dataset.startswith(prefix):
            return None
        below = target_dataset[len(prefix):]
        return below if self.strip is None else f"{self.strip}/{below}"

    def receive_overrides(self, kind: str) -> tuple[tuple[str, str], ...]:
        """``zfs recv -o`` for a replica of this kind: the safe defaults, less what is excluded,
        with the configured overrides on top; properties of the other kind left out."""
        excluded = set(self.properties.exclude or ())
        merged = {k: v for k, v in SAFE_OVERRIDES.items() if k not in excluded}
        merged.update(self.properties.override)
        return tuple((k, merged[k]) for k in for_kind(merged, kind))

    def receive_excludes(self, kind: str) -> tuple[str, ...]:
        """``zfs recv -x`` for a replica of this kind (see ``ReceiveProperties.exclude``)."""
        names = self.properties.exclude
        if names is None:
            defaults = SAFE_EXCLUDES_WITH_SEND_PROPERTIES if self.send_properties else ()
            names = [n for n in defaults if n not in self.properties.override]
        return tuple(for_kind(names, kind))


def check_host_name(name: str) -> str:
    if not HOST_NAME.match(name):
        raise ValueError(f"host name {name!r} may contain only letters, digits, '_', '.', '-'")
    return name


# Keys are validated one by one (not by a validator on the whole dict) so that every bad
# key is reported, together with the problems inside the values.
FilterKey = Annotated[str, AfterValidator(check_filter_key)]
HostName = Annotated[str, AfterValidator(check_host_name)]


class FilesystemEntry(Model):
    host: str = Field(description="name of a host in hosts")
    filter: dict[FilterKey, bool] = Field(
        min_length=1,
        description="zrepl filter: dataset -> true/false; a trailing '<' also matches the children")
    policy: str = Field(description="name of a policy in policies")
    replicate_to: list[Target] = Field(default_factory=list)


def check_local_path(value: str) -> str:
    """A path on this machine for a file the tool writes: absolute, or starting with ``~``
    (expanded for the user who runs the tool). A relative path is refused: a service's
    working directory is not the configuration's, so it would name another file there."""
    if not value:
        raise ValueError("must not be empty: leave it out for the default")
    if "\0" in value:
        raise ValueError("must not contain a NUL character")
    if not (value.startswith("/") or value.startswith("~")):
        raise ValueError(f"{value!r} is relative: give an absolute path or one starting with ~/ (the"
                         " directory a service runs in is not the configuration's)")
    return value


def check_metrics_file(value: str) -> str:
    check_local_path(value)
    if not value.endswith(".prom") or value.endswith("/.prom"):
        # node_exporter's textfile collector reads only *.prom: any other name is never scraped.
        raise ValueError(f"{value!r} does not end in .prom: node_exporter's textfile collector reads only"
                         " files named *.prom")
    return value


DEFAULT_PARALLEL_SENDS = 1


class Settings(Model):
    """How the tool runs (not what it manages): the optional top-level ``settings`` section."""

    parallel_hosts: int = Field(
        default=16, ge=1, le=1024,
        description="how many hosts are read (one zfs list each) at the same time")
    parallel_sends: int = Field(
        default=DEFAULT_PARALLEL_SENDS, ge=1, le=64,
        description="how many sends of different filesystems run at the same time (apply/run --parallel N"
                    " overrides); what must stay ordered stays ordered")
    state_dir: str | None = Field(
        default=None,
        description="where each apply/run cycle records its results for `status` (absolute or ~/...); "
                    "default /var/lib/zrepl-reconcile for root, $XDG_STATE_HOME/zrepl-reconcile "
                    "(~/.local/state/zrepl-reconcile) otherwise")
    metrics_file: str | None = Field(
        default=None,
        description="Prometheus metrics written by apply, run and status for node_exporter's textfile "
                    "collector (absolute or ~/..., ending in .prom); --metrics-file overrides")
    on_failure: list[str] | None = Field(
        default=None, min_length=1,
        description="a command (argv, no shell) run after a cycle with failed actions or unreachable "
                    "hosts, with a JSON report on stdin; its own failure is logged, never fatal")

    @field_validator("state_dir")
    @classmethod
    def _state_dir(cls, v: str | None) -> str | None:
        return v if v is None else check_local_path(v)

    @field_validator("metrics_file")
    @classmethod
    def _metrics_file(cls, v: str | None) -> str | None:
        return v if v is None else check_metrics_file(v)

    @field_validator("on_failure")
    @classmethod
    def _on_failure(cls, v: list[str] | None) -> list[str] | None:
        return v if v is None else check_command(v)


@dataclass(frozen=True, slots=True)
class DatasetRole:
    """Why a dataset is managed: as a source of ``entry``, or (``target`` set) as the replica
    of ``source`` in that target of it."""

    entry: FilesystemEntry
    source: str  # the source dataset's name
    target: Target | None = None

    def partners(self) -> list[tuple[str, str]]:
        """(host, dataset) on the other side of its replication pairs: a source's replicas,
        a replica's source."""
        if self.target is None:
            return [(t.host, t.target_dataset(self.source)) for t in self.entry.replicate_to]
        return [(self.entry.host, self.source)]


class Config(Model):
    hosts: dict[HostName, HostConfig] = Field(min_length=1, description="machines by name")
    policies: dict[str, Policy] = Field(min_length=1, description="snapshot and retention policies by name")
    filesystems: list[FilesystemEntry] = Field(
        min_length=1, description="which datasets on which host follow which policy, and where they go")
    settings: Settings = Field(default_factory=Settings, description="how the tool runs")

    def role_of(self, host: str, dataset: str) -> DatasetRole | None:
        """The entry that manages ``host:dataset`` and as what; None when none does. (Loading
        refuses a configuration in which one dataset would be both a source and a replica.)"""
        for entry in self.filesystems:
            if entry.host == host and filter_decision(entry.filter, dataset):
                return DatasetRole(entry, dataset)
            for target in entry.replicate_to:
                source = target.source_dataset(dataset) if target.host == host else None
                if source is not None and filter_decision(entry.filter, source):
                    return DatasetRole(entry, source, target)
        return None
