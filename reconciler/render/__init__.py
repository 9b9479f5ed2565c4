"""Render a Plan for people (text through rich, GitHub markdown) and for machines (Plan JSON).

All three read the very same Plan object the executor runs. Text and markdown group
actions by host and then filesystem, list every destroyed snapshot with its reason,
state the prune-vs-replication rule per filesystem, and end (text) or start (markdown)
with one summary line. Conflicts, unavailable hosts and warnings are never folded away.

A first mass prune destroys a million snapshots, so all three are written out as they
are produced (``text.write_text``, ``markdown.write_markdown``, ``json.write_json``),
never held whole in memory, and the per-destroy work is a few string operations. (The
markdown for a pull-request comment, ``max_chars``, is made in memory: at most that long.)

- ``view``: what text and markdown share: the plan grouped by host and filesystem, the
  summary line, the wording of an action's details, a send seen from its target.
- ``text``: the terminal and pipe rendering (colour through rich, wrapped to the width).
- ``markdown``: GitHub-flavoured markdown for a pull-request comment, escaped, fitted to
  GitHub's comment limit when asked (``fit_markdown``).
- ``json``: the Plan JSON (docs/plan-json.md), streamed, with the digest that
  ``apply --plan`` checks (``planfile`` reads it back).

Import from the module that does the job (``from reconciler.render.text import
render_text``); this package exports nothing itself.
"""
