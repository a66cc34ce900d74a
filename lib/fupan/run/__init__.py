"""Running a review: the command line (``cli``), executing the notebooks (``runner``) and
the monthly KPI deck (``monthly``)."""

import sys


def skip_slow_imports() -> None:
    """In a process of ours (a notebook process, the CLI): nbformat's
    jsonschema imports ``rfc3987_syntax`` when it is installed, which builds a Lark parser
    for IRIs at import (1 CPU s in every process). Notebooks are validated against a
    draft-4 schema, which has no IRI format; without the module jsonschema only lacks its
    IRI format checkers."""
    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]
