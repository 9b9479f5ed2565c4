"""``zrepl-reconcile validate``: check the configuration and summarise what it manages."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from reconciler.codes import ExitCode
from reconciler.commands.common import add_config_argument
from reconciler.config.load import load_config
from reconciler.config.models import (
    DEFAULT_STALL_TIMEOUT,
    Config,
    FilesystemEntry,
    HostConfig,
    KeepGrid,
    KeepLastN,
    KeepNotReplicated,
    KeepRegex,
    KeepRule,
    Policy,
    SshHost,
    Target,
)
from reconciler.config.rates import format_rate
from reconciler.importers.placeholders import find_placeholders
from reconciler.wording import plural

PROTECTED = ("keep_source has not_replicated: snapshots not yet on every target are protected"
             " (pruning waits for stalled replication)")
NOT_REPLICATED = "no filesystem entry with this policy replicates: the keep rules alone decide"
PRUNE_WINS = ("keep_source has no not_replicated: pruning wins over stalled replication"
              " (bounded disk use; unreplicated snapshots may be destroyed)")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "validate", help="check the configuration and summarise what it manages",
        description="Validate the configuration (YAML, schema, models, cross references) and print a "
                    "summary. Exits 1 listing every problem as FILE:LINE:COL: field.path: message.")
    add_config_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    sys.stdout.write("\n".join(summarize_config(config, args.config)) + "\n")
    for place in find_placeholders(config):  # left by `import`: valid, but never a real value
        print(f"warning: {args.config}: {place}: a placeholder from `import`; fill it in", file=sys.stderr)
    return ExitCode.OK


def summarize_config(config: Config, filename: str) -> list[str]:
    """The human summary ``validate`` prints: hosts, policies, filesystem entries and targets."""
    counts = (f"{plural(len(config.hosts), 'host')}, {plural(len(config.policies), 'policy', 'policies')}, "
              f"{plural(len(config.filesystems), 'filesystem entry', 'filesystem entries')}")
    lines = [f"{filename}: valid ({counts})", "", "hosts:"]
    width = max(len(name) for name in config.hosts)
    lines += [f"  {name:<{width}}  {describe_host(host)}" for name, host in config.hosts.items()]
    lines += ["", "policies:"]
    for name, policy in config.policies.items():
        replicated = any(e.replicate_to for e in config.filesystems if e.policy == name)
        lines += [f"  {name}"] + [f"    {line}" for line in describe_policy(policy, replicated)]
    lines += ["", "filesystems:"]
    for index, entry in enumerate(config.filesystems):
        lines += [f"  {line}" for line in describe_entry(index, entry)]
    return lines


def describe_host(host: HostConfig) -> str:
    command = shlex.join(host.zfs_command)
    if isinstance(host, SshHost):
        return f"ssh {host.user}@{host.address}:{host.port}  (runs: {command})"
    return f"local  (runs: {command})"


def describe_policy(policy: Policy, replicated: bool = True) -> list[str]:
    if policy.snapshots is None:
        snapshots = "none (this policy creates no snapshots)"
    else:
        snapshots = f"{policy.snapshots.prefix}<UTC timestamp> every {policy.snapshots.interval}"
    lines = [f"snapshots    {snapshots}", f"manage       {policy.manage_regex}"]
    lines += _rules("keep_source", policy.keep_source)
    lines += _rules("keep_target", policy.keep_target)
    if replicated:
        lines.append(f"prune rule   {PROTECTED if policy.protects_unreplicated else PRUNE_WINS}")
    else:
        lines.append(f"prune rule   {NOT_REPLICATED}")
    return lines


def _rules(label: str, rules: list[KeepRule]) -> list[str]:
    if not rules:
        return [f"{label:<12} (no rules: keeps every snapshot)"]
    return [f"{label if i == 0 else '':<12} {describe_rule(rule)}" for i, rule in enumerate(rules)]


def describe_rule(rule: KeepRule) -> str:
    if isinstance(rule, KeepGrid):
        return f"grid {rule.grid}{_regex_suffix(rule.regex)}"
    if isinstance(rule, KeepLastN):
        return f"last_n {rule.count}{_regex_suffix(rule.regex)}"
    if isinstance(rule, KeepRegex):
        return f"regex {'not ' if rule.negate else ''}{rule.regex}"
    assert isinstance(rule, KeepNotReplicated)
    return "not_replicated (keep every snapshot not yet on every target)"


def _regex_suffix(regex: str) -> str:
    return "" if regex == ".*" else f" matching {regex}"


def describe_entry(index: int, entry: FilesystemEntry) -> list[str]:
    selected = ", ".join(f"{key} ({'include' if on else 'exclude'})" for key, on in entry.filter.items())
    lines = [f"[{index}] on {entry.host}, policy {entry.policy}: {selected}"]
    if not entry.replicate_to:
        lines.append("    no replication (local snapshots and retention only)")
    for target in entry.replicate_to:
        example = next((key.removesuffix("<") for key, value in entry.filter.items() if value), "")
        options = "".join([f", initial={target.initial}", ", raw" if target.raw else "",
                           ", plain stream" if not target.large_blocks else "",
                           f", limit {format_rate(limit)}" if (limit := target.bandwidth_limit_bytes) else "",
                           f", stall_timeout {target.stall_timeout}"
                           if target.stall_timeout != DEFAULT_STALL_TIMEOUT else "",
                           f", strip={target.strip}" if target.strip else ""])
        mapped = f"{example} -> {target.target_dataset(example)}" if target.maps(example) else example
        lines.append(f"    -> {target.host}:{target.root}  (e.g. {mapped}{options})")
        lines += [f"       {line}" for line in describe_replicas(target)]
    return lines


RAW_MEANING = {
    None: "raw not set: an encrypted source is refused (conflict unencrypted_replica) until raw is true,"
          " or false on purpose",
    True: "raw: encrypted sources stay encrypted on the target, their keys are never loaded there",
    False: "raw: false: an encrypted source is replicated decrypted (every plan warns)",
}


def describe_replicas(target: Target) -> list[str]:
    """What protects the replicas of one target: receive options, protection, raw."""
    options = [f"-o {k}={v}" for k, v in target.receive_overrides("filesystem")]
    options += [f"-x {k}" for k in target.receive_excludes("filesystem")]
    send = "zfs send -p, " if target.send_properties else ""
    protection = target.protection
    return [f"receive: {send}zfs recv {' '.join(options) or '(no -o/-x)'} (volumes: only what applies)",
            f"protection: initial {protection.initial}, incremental {protection.incremental}",
            RAW_MEANING[target.raw]]
