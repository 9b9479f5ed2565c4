"""Other tools' configurations turned into ours: zrepl (``zrepl``), sanoid (``sanoid``) and
znapzend (``znapzend``).

Each importer reads its tool's files into a ``Draft`` (plain configuration data, comments
and notes), which ``emit`` writes as commented YAML and validates with the ordinary
loader. What cannot be said exactly in our vocabulary is a ``Note``: on stderr, one line
each, and as a comment in the output. A value the source configuration does not name is
a placeholder containing ``FILL-IN`` (``placeholders``), never a guess.
"""
