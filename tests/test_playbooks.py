"""Every example playbook is a valid configuration (new ones are picked up by the glob)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from reconciler.config.load import load_config
from reconciler.config.models import KeepNotReplicated, SshHost

PLAYBOOKS = Path(__file__).parent.parent / "playbooks"
ANSIBLE = PLAYBOOKS / "ansible"


def is_configuration(path: Path) -> bool:
    """Hidden folders hold CI workflow files (also YAML), ansible/ Ansible playbooks, roles and
    inventories; of ansible/ only files/ holds a configuration (the fleet's)."""
    if any(part.startswith(".") for part in path.relative_to(PLAYBOOKS).parts):
        return False
    return not path.is_relative_to(ANSIBLE) or path.is_relative_to(ANSIBLE / "files")


CONFIGS = sorted(p for p in PLAYBOOKS.rglob("*.yml") if is_configuration(p))


def test_the_promised_playbooks_exist() -> None:
    names = {p.relative_to(PLAYBOOKS).as_posix() for p in CONFIGS}
    assert {"local-retention.yml", "push-ssh-backup.yml", "pull-two-hosts.yml", "laptop-prune-wins.yml",
            "demo-local.yml", "gitops/zrepl-reconcile.yml", "ansible/files/zrepl-reconcile.yml"} <= names
    assert (PLAYBOOKS / "gitops" / "README.md").is_file()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(PLAYBOOKS).as_posix())
def test_playbook_validates(path: Path) -> None:
    config = load_config(path)
    assert config.filesystems
    assert path.read_text().lstrip().startswith("#"), "a playbook opens with a comment saying what it shows"


def test_some_dataset_name_has_a_space_or_colon() -> None:
    keys = [key for path in CONFIGS for entry in load_config(path).filesystems for key in entry.filter]
    assert any(" " in key or ":" in key for key in keys)


def test_laptop_prunes_without_not_replicated() -> None:
    policy = load_config(PLAYBOOKS / "laptop-prune-wins.yml").policies["laptop"]
    assert not policy.protects_unreplicated
    assert not any(isinstance(rule, KeepNotReplicated) for rule in policy.keep_source)


def test_demo_replicates_src_into_dst_backup_on_one_local_host() -> None:
    config = load_config(PLAYBOOKS / "demo-local.yml")
    assert [host.connection for host in config.hosts.values()] == ["local"]
    (entry,) = config.filesystems
    assert entry.filter == {"src<": True}
    assert [(t.host, t.root) for t in entry.replicate_to] == [(entry.host, "dst/backup")]


def test_gitops_workflow_plans_on_pull_requests_and_applies_on_main() -> None:
    workflow = YAML(typ="safe").load(PLAYBOOKS / "gitops" / ".github" / "workflows" / "zfs-plan.yml")
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 readers turn `on` into True
    assert set(triggers) == {"pull_request", "push"}
    assert triggers["push"]["branches"] == ["main"]
    plan_steps = " ".join(step.get("run", "") for step in workflow["jobs"]["plan"]["steps"])
    apply_steps = " ".join(step.get("run", "") for step in workflow["jobs"]["apply"]["steps"])
    assert "plan -c zrepl-reconcile.yml --format markdown --detailed-exitcode" in plan_steps
    assert '2) echo "changes=true"' in plan_steps  # exit 2 (changes pending) is not a failure
    assert "apply -c zrepl-reconcile.yml -y" in apply_steps
    assert workflow["jobs"]["apply"]["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"


def test_gitops_docs_say_what_the_workflow_and_the_exit_codes_do() -> None:
    gitops = PLAYBOOKS / "gitops"
    workflow = YAML(typ="safe").load(gitops / ".github" / "workflows" / "zfs-plan.yml")
    steps = workflow["jobs"]["plan"]["steps"]
    assert 'cat plan.md >> "$GITHUB_STEP_SUMMARY"' in " ".join(step.get("run", "") for step in steps)
    assert any(step.get("uses", "").startswith("actions/upload-artifact") for step in steps)
    readme, config = (gitops / "README.md").read_text(), (gitops / "zrepl-reconcile.yml").read_text()
    prose = " ".join(readme.split())
    assert "job summary" in prose and "artifact" in prose
    assert "job summary" in config and "one comment on the pull request" in config
    # plan exits 0/2 with an unreachable host (README.md "Exit codes"): it must not be named as exit 1
    assert "unreachable host) fails" not in prose
    assert "An unreachable host or a conflict does not" in prose
    hosts = load_config(gitops / "zrepl-reconcile.yml").hosts.values()
    for path in {host.known_hosts for host in hosts if isinstance(host, SshHost)}:
        assert f"`{path}`" in readme  # where the runner keeps it, not "committed alongside"
    assert "committed alongside" not in config


def test_gitops_workflow_posts_or_updates_one_comment_per_pull_request() -> None:
    gitops = PLAYBOOKS / "gitops"
    workflow = YAML(typ="safe").load(gitops / ".github" / "workflows" / "zfs-plan.yml")
    job = workflow["jobs"]["plan"]
    assert job["permissions"] == {"contents": "read", "pull-requests": "write"}
    steps = job["steps"]
    plan_run = " ".join(step.get("run", "") for step in steps)
    assert "--out plan.json" in plan_run and '--full-plan-url "$RUN_URL"' in plan_run
    assert "--max-chars 0" not in plan_run  # the default keeps the comment under GitHub's limit
    upload = next(step for step in steps if step.get("uses", "").startswith("actions/upload-artifact"))
    assert "plan.json" in upload["with"]["path"]
    (comment,) = [step for step in steps if step.get("uses", "").startswith("actions/github-script")]
    assert steps.index(comment) > steps.index(upload)  # the artifact is kept even if commenting fails
    script = comment["with"]["script"]
    marker = "<!-- zrepl-reconcile-plan -->"
    assert f"const marker = '{marker}'" in script and "readFileSync('plan.md'" in script
    assert "github.paginate(github.rest.issues.listComments" in script
    assert "c.body?.startsWith(marker)" in script and "c.user?.type === 'Bot'" in script  # ours only
    assert "updateComment" in script and "createComment" in script
    prose = " ".join((gitops / "README.md").read_text().split())
    assert "ONE comment" in prose and marker in prose and "65,536" in prose and "--max-chars" in prose


def test_the_comment_stays_under_githubs_limit_with_its_marker() -> None:
    from reconciler.render.markdown import DEFAULT_MAX_CHARS, GITHUB_COMMENT_LIMIT

    assert DEFAULT_MAX_CHARS + len("<!-- zrepl-reconcile-plan -->\n") < GITHUB_COMMENT_LIMIT
