"""Load a desired-state YAML file into ``Config``, reporting every problem with its position.

Three layers, all run so that one pass reports everything:

1. YAML (``document``): the file read and decoded, composed into nodes so every key keeps
   its line and column; duplicate keys, nesting, alias expansion and size are checked
   before anything else looks at the data.
2. Shape (``shape``): the JSON schema generated from the models (unknown keys, wrong types).
3. Meaning (``meaning``): the pydantic models (regexes, grids, names), then cross references
   (``references``) that need the whole file (undefined hosts/policies, self-replication,
   overlapping filters).

Each problem is a ``ConfigProblem`` rendered ``FILE:LINE:COL: field.path: message``, its
path and values worded by ``wording``.
"""

from __future__ import annotations

import os

from reconciler.config.document import parse_document, read_config_text
from reconciler.config.meaning import validate_models
from reconciler.config.models import Config
from reconciler.config.references import cross_reference_problems
from reconciler.config.shape import shape_problems
from reconciler.errors import ConfigError, ConfigProblem


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, parse and validate a configuration file; raise ``ConfigError`` with every problem."""
    filename = os.fspath(path)
    return load_config_text(read_config_text(filename), filename)


def load_config_text(text: str, filename: str) -> Config:
    """Parse and validate configuration text; ``filename`` is only used in messages."""
    document = parse_document(text, filename)
    problems = list(document.problems)
    problems += shape_problems(document)
    config, model_problems = validate_models(document)
    problems += [p for p, meaning in model_problems if not _already_reported(p.path, problems, meaning)]
    problems += cross_reference_problems(document)
    if problems or config is None:
        raise ConfigError(sorted(set(problems), key=lambda p: (p.line, p.column, p.path)))
    return config


def _already_reported(path: str, problems: list[ConfigProblem], meaning: bool) -> bool:
    """The models re-find the schema's shape problems, at the same place or just above/below it.

    Their own meaning checks (names, regexes, grids) are new unless reported at that very path.
    """
    def related(a: str, b: str) -> bool:
        return a == b or b.startswith((a + ".", a + "["))
    if meaning:
        return any(q.path == path for q in problems)
    return any(related(path, q.path) or related(q.path, path) for q in problems)

