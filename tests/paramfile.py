"""The one writer of test params files (the `make_params` fixture in conftest wraps it).

Each test states only the fields it is about; everything else is fupan's default. Fields are
written as `key: value` lines in the order given, then `data.source`, `notebooks` and the
test's own YAML text (`extra`), so a test can add whole sections (`churn:\\n  ...`).
`update` edits a written file as parsed YAML.
"""

from __future__ import annotations

from pathlib import Path


def write(
    folder: str | Path,
    data: str | Path | None = None,
    extra: str = "",
    *,
    filename: str = "params.yaml",
    notebooks: tuple[str, ...] | list[str] | None = None,
    benchmarks_file: str | None = "null",
    **fields: object,
) -> Path:
    """Write `folder/filename` and return its path.

    Parameters
    ----------
    folder : the folder the file goes into (created when absent).
    data : `data.source` as given (a test that wants an absolute path resolves it first);
        None leaves the data section out.
    extra : YAML appended verbatim (whole sections, or keys of a section opened by it).
    filename : the file's name.
    notebooks : the notebooks to run; None leaves fupan's default (all of the kind's).
    benchmarks_file : "null" (the default) runs without benchmarks; None leaves the key out.
    **fields : top-level scalars (name, as_of, kind, lang, seed, business_model, ...).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"{key}: {value}" for key, value in fields.items()]
    if benchmarks_file is not None:
        lines.append(f"benchmarks_file: {benchmarks_file}")
    if data is not None:
        lines.append(f"data:\n  source: {data}")
    if notebooks is not None:
        lines.append("notebooks:\n" + "\n".join(f"  - {n}" for n in notebooks))
    path = folder / filename
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


def update(path: str | Path, changes: dict | str = "", /, **fields: object) -> Path:
    """Edit a params file as YAML and return its path.

    ``changes`` (a mapping, or YAML text such as ``"data:\\n  encoding: utf-8\\n"``) is merged
    into the parsed file section by section (a mapping into a mapping, anything else
    replaces); ``fields`` set top-level keys (``name="..."``). A test that edited the text
    with ``str.replace`` changed nothing, silently, once the text it looked for moved; this
    fails instead when the file is not a mapping.
    """
    import yaml

    path = Path(path)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise ValueError(f"{path} is not a YAML mapping")
    more = yaml.safe_load(changes) if isinstance(changes, str) else changes
    _merge(doc, {**(more or {}), **fields})
    path.write_text(
        yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, default_flow_style=False),
        encoding="utf-8",
    )
    return path


def _merge(into: dict, changes: dict) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
