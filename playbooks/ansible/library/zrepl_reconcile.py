#!/usr/bin/python
"""Ansible module: reconcile this host's part of a zrepl-reconcile configuration.

It runs the installed ``zrepl-reconcile`` (``plan --as HOST --detailed-exitcode --out FILE``,
then, to apply, ``apply --as HOST -y``); it never plans by itself. See DOCUMENTATION below and
playbooks/ansible/.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: zrepl_reconcile
short_description: Plan or apply this host's part of a zrepl-reconcile configuration
description:
  - Runs the installed C(zrepl-reconcile) on the managed host. It first computes the plan with
    C(zrepl-reconcile plan --as HOST --detailed-exitcode --out FILE) (exit 2 means changes are
    pending) and returns it in structure (the Plan JSON's summary, actions, conflicts, warnings
    and unavailable hosts).
  - In check mode, or with O(state=planned), nothing is changed and C(changed) says whether
    the plan has changes. With C(--diff) the text plan is shown, as C(zrepl-reconcile plan) prints it.
  - Otherwise, when the plan has changes, C(zrepl-reconcile apply --as HOST -y) applies them, as the
    host's service (C(run --as HOST)) does - it plans again and executes that plan, so an empty
    placeholder another host's run created meanwhile is not created twice. C(changed) is true when
    actions ran, and the failed and skipped actions are returned. A failing apply fails the task.
  - Any error of the tool (a bad configuration with its FILE:LINE:COL, an unknown host, the apply
    lock held by another run, a stale plan) fails the task with the tool's own message.
  - With O(host) set to the inventory name the host runs only its own part of a configuration
    shared by the whole fleet (C(--as)); two hosts' runs never act on the same dataset. See the
    README section "Many hosts".
version_added: "0.1.0"
author: zrepl-reconcile contributors
options:
  config:
    description: Path of the configuration file on the managed host.
    type: path
    required: true
  host:
    description:
      - The configuration's name of the managed host, usually C({{ inventory_hostname }}). Passed
        as C(--as HOST) - its own part only, with its zfs run locally.
      - Leave it out to plan the whole configuration from this host (a single controller).
    type: str
  state:
    description:
      - V(applied) applies the plan (unless in check mode); V(planned) only plans and reports
        whether changes are pending, as check mode does.
    type: str
    choices: [planned, applied]
    default: applied
  parallel:
    description:
      - How many sends run at the same time (C(apply --parallel N)). Passed only when the installed
        C(zrepl-reconcile) has C(apply --parallel); otherwise the task warns that it was not passed
        (sends then run one at a time) and goes on. Not used when only planning.
    type: int
  filesystems:
    description: Narrow the plan to these datasets and those below them (C(--filesystem), repeatable).
    type: list
    elements: str
    default: []
  now:
    description: Plan as if it were this UTC time (C(--now), e.g. V(2026-11-24T12:00:00Z)); for tests.
    type: str
  executable:
    description:
      - The C(zrepl-reconcile) command. By default it is looked up in C(PATH) and in
        C(/opt/zrepl-reconcile/bin) (the venv the rollout playbook installs).
    type: path
notes:
  - Supports check mode and diff mode.
  - The Plan JSON is written to a private temporary file that is removed afterwards.
  - An apply takes the configuration's lock; while the host's own service is applying, the task
    fails with the tool's message naming the lock holder.
requirements:
  - zrepl-reconcile installed on the managed host (see playbooks/ansible/rollout.yml).
"""

EXAMPLES = r"""
- name: Show what each host would do (ansible-playbook plan.yml --check --diff)
  zrepl_reconcile:
    config: /etc/zrepl-reconcile/zrepl-reconcile.yml
    host: "{{ inventory_hostname }}"
  check_mode: true

- name: Reconcile this host's own part now
  zrepl_reconcile:
    config: /etc/zrepl-reconcile/zrepl-reconcile.yml
    host: "{{ inventory_hostname }}"
    state: applied
    parallel: 4
  register: reconciled

- name: Fail loudly on conflicts
  ansible.builtin.assert:
    that: reconciled.conflicts | length == 0
    fail_msg: "{{ reconciled.conflicts | map(attribute='message') | list }}"
"""

RETURN = r"""
pending:
  description: Whether the plan had changes (exit 2 of C(plan --detailed-exitcode)).
  returned: always
  type: bool
plan:
  description: The plan's header and summary, from the Plan JSON (docs/plan-json.md).
  returned: always
  type: dict
  contains:
    summary:
      description: Counts per action kind (C(snapshot), C(send), C(destroy) names, ...) and C(conflicts).
      type: dict
      sample: {"snapshot": 2, "send": 2, "destroy": 5, "conflicts": 0}
    selection:
      description: The C(--as)/C(--host)/C(--filesystem) the plan was computed for.
      type: dict
      sample: {"hosts": [], "filesystems": [], "as": "nas"}
    now:
      description: The plan's clock (UTC).
      type: str
    fingerprint:
      description: sha256 of the facts the plan depends on.
      type: str
    tool_version:
      description: The zrepl-reconcile version that computed the plan.
      type: str
    warnings:
      description: The plan's warnings (e.g. snapshots destroyed before they were replicated).
      type: list
      elements: str
    unavailable:
      description: Hosts that could not be read, each with C(host) and C(reason).
      type: list
      elements: dict
actions:
  description: The plan's actions in execution order, as in the Plan JSON (C(kind), C(host), C(dataset), ...).
  returned: always
  type: list
  elements: dict
conflicts:
  description: Targets nothing is done for, each with C(code), C(host), C(dataset), C(message) and C(fix).
  returned: always
  type: list
  elements: dict
plan_text:
  description: The plan as C(zrepl-reconcile plan) prints it (also the diff with C(--diff)).
  returned: always
  type: str
apply:
  description: What the apply did (its closing line in numbers).
  returned: when the plan was applied
  type: dict
  sample: {"done": 7, "failed": 0, "skipped": 0, "summary": "Apply: 7 done, 0 failed, 0 skipped."}
failed_actions:
  description: Each failed action (C(action), as the tool describes it) with the tool's C(message).
  returned: when the plan was applied
  type: list
  elements: dict
  sample: [{"action": "destroy tank/a@zrepl_20261124_100000", "message": "snapshot is held (tag keep)"}]
skipped_actions:
  description: Actions not run because something they depend on failed, with the reason.
  returned: when the plan was applied
  type: list
  elements: dict
"""

import json  # noqa: E402  (Ansible reads the documentation blocks above first)
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

DEFAULT_DIRS = ["/opt/zrepl-reconcile/bin", "/usr/local/bin"]
SUMMARY = re.compile(r"^Apply: (\d+) done, (\d+) failed, (\d+) skipped\.")
PLAN_HEADER_KEYS = ("summary", "selection", "now", "fingerprint", "tool_version", "warnings", "unavailable")
# Where the CLI's own error lines start (cli.error_message: "error: ...", one per problem).
ERROR_PREFIXES = ("error: ", "internal error: ")


def tool_message(stderr, stdout="", fallback="zrepl-reconcile failed"):
    """The tool's own error message: its ``error: ...`` line and any problem lines after it
    (a configuration with several problems lists one FILE:LINE:COL per line)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.startswith(ERROR_PREFIXES):
            return "\n".join(lines[index:])
    tail = lines or [line for line in stdout.splitlines() if line.strip()]
    return "\n".join(tail[-5:]) if tail else fallback


def parse_apply_report(stdout):
    """The apply report ``zrepl-reconcile apply`` prints after the plan: its Failed/Skipped
    sections (``  <action>: <message>``) and the closing ``Apply: N done, ...`` line."""
    sections = {"Failed:": [], "Skipped:": []}
    current = None
    counts = None
    for line in stdout.splitlines():
        stripped = line.strip()
        match = SUMMARY.match(stripped)
        if match:
            counts = {"done": int(match.group(1)), "failed": int(match.group(2)),
                      "skipped": int(match.group(3)), "summary": stripped}
            current = None
        elif stripped in sections:
            current = sections[stripped]
        elif current is not None and line.startswith("  ") and stripped:
            action, _, message = stripped.partition(": ")
            current.append({"action": action, "message": message})
        elif not stripped or not line.startswith("  "):
            current = None
    return counts, sections["Failed:"], sections["Skipped:"]


def plan_results(document, text):
    return {
        "plan": {key: document.get(key) for key in PLAN_HEADER_KEYS},
        "actions": document.get("actions", []),
        "conflicts": document.get("conflicts", []),
        "plan_text": text,
    }


def find_executable(module):
    given = module.params["executable"]
    if given:
        if not (os.path.isfile(given) and os.access(given, os.X_OK)):
            module.fail_json(msg=f"executable {given} is not an executable file")
        return given
    return module.get_bin_path("zrepl-reconcile", required=True, opt_dirs=DEFAULT_DIRS)


def supports_parallel(module, executable):
    rc, out, _err = module.run_command([executable, "apply", "--help"], environ_update=ENV)
    return rc == 0 and "--parallel" in out


ENV = {"NO_COLOR": "1", "COLUMNS": "160", "PYTHONUNBUFFERED": "1"}


def main():
    module = AnsibleModule(
        argument_spec={
            "config": {"type": "path", "required": True},
            "host": {"type": "str"},
            "state": {"type": "str", "choices": ["planned", "applied"], "default": "applied"},
            "parallel": {"type": "int"},
            "filesystems": {"type": "list", "elements": "str", "default": []},
            "now": {"type": "str"},
            "executable": {"type": "path"},
        },
        supports_check_mode=True,
    )
    params = module.params
    if params["parallel"] is not None and params["parallel"] < 1:
        module.fail_json(msg=f"parallel must be 1 or more, not {params['parallel']}")
    executable = find_executable(module)
    workdir = tempfile.mkdtemp(prefix="zrepl-reconcile-ansible-")
    try:
        run(module, executable, os.path.join(workdir, "plan.json"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(module, executable, plan_file):
    params = module.params
    selection = ["--as", params["host"]] if params["host"] else []
    for name in params["filesystems"]:
        selection += ["--filesystem", name]
    command = [executable, "plan", "-c", params["config"], *selection, "--format", "text", "--out", plan_file,
               "--detailed-exitcode"]
    if params["now"]:
        command += ["--now", params["now"]]
    rc, out, err = module.run_command(command, environ_update=ENV)
    if rc not in (0, 2):
        module.fail_json(msg=tool_message(err, out), rc=rc, cmd=command, stdout=out, stderr=err)
    with open(plan_file, encoding="utf-8") as fh:
        document = json.load(fh)
    pending = rc == 2
    result = {"pending": pending, **plan_results(document, out)}
    if module._diff:
        result["diff"] = {"prepared": out}
    if module.check_mode or params["state"] == "planned":
        module.exit_json(changed=pending, **result)  # what applying would change
    if not pending:
        module.exit_json(changed=False, **result)
    apply_command = [executable, "apply", "-c", params["config"], *selection, "-y"]
    if params["now"]:
        apply_command += ["--now", params["now"]]
    if params["parallel"] is not None:
        if supports_parallel(module, executable):
            apply_command += ["--parallel", str(params["parallel"])]
        else:
            module.warn(f"parallel: {params['parallel']} was not passed: the installed zrepl-reconcile "
                        f"({document.get('tool_version')}) has no apply --parallel yet, so its sends run one "
                        "at a time")
    rc, out, err = module.run_command(apply_command, environ_update=ENV)
    counts, failed, skipped = parse_apply_report(out)
    result.update(apply=counts, failed_actions=failed, skipped_actions=skipped, apply_stdout=out)
    changed = bool(counts and counts["done"])
    if rc != 0:
        if failed:
            first = failed[0]
            msg = (f"{counts['summary'] if counts else 'apply failed'} First failure: {first['action']}:"
                   f" {first['message']}")
        else:
            msg = tool_message(err, out, "zrepl-reconcile apply failed")
        module.fail_json(msg=msg, changed=changed, rc=rc, cmd=apply_command, stderr=err, **result)
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
