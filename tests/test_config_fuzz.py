"""Bad input never crashes: whatever the text, loading returns a Config or raises ConfigError."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from reconciler.config.load import load_config_text
from reconciler.errors import ConfigError

PLAYBOOKS = sorted((Path(__file__).parent.parent / "playbooks").glob("*.yml"))
KEYS = ["hosts", "policies", "filesystems", "connection", "local", "ssh", "address", "port", "type", "grid",
        "regex", "filter", "host", "policy", "replicate_to", "root", "snapshots", "prefix", "interval",
        "keep_source", "keep_target", "tank<", "nas", "count", "manage", "<<"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=True),
                    st.sampled_from([*KEYS, "1x1h", "1x1h(keep=all) | 24x1h", "^z_", "(", "1h", ""]),
                    st.text(max_size=8))
documents = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)), max_leaves=30)


def loads_or_config_error(text: str) -> None:
    try:
        load_config_text(text, "fuzz.yml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yml")
        assert "Traceback" not in str(exc)
        lines = text.split("\n")
        for problem in exc.problems:  # every position points into the text
            assert 1 <= problem.line <= len(lines)
            assert 1 <= problem.column <= len(lines[problem.line - 1]) + 1


def dump(data: Any) -> str:
    out = io.StringIO()
    YAML(typ="safe").dump(data, out)
    return out.getvalue()


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list("ab:- \n\t[]{},'\"&*!|>#%@`<\\x0\u00e9\ufeff")), max_size=80))
def test_random_text(text: str) -> None:
    loads_or_config_error(text)


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_random_structures(data: Any) -> None:
    loads_or_config_error(dump(data))


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PLAYBOOKS), st.integers(0, 10_000), st.integers(1, 40))
def test_damaged_playbooks(path: Path, start: int, length: int) -> None:
    text = path.read_text()
    start %= len(text)
    loads_or_config_error(text[:start] + text[start + length:])
