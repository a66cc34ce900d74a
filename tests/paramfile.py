"""The one writer of test params files (the `make_params` fixture in conftest wraps it).

Each test states only the fields it is about; everything else is fupan's default. Fields are
written as `key: value` lines in the order given, then `data.source`, `notebooks` and the
test's own YAML text (`extra`), so a test can add whole sections (`churn:\\n  ...`).
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
