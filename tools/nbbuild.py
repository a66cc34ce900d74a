"""Write a notebook from a plain-text script (cells split by '# %%' lines).

Authoring notebooks as text keeps diffs readable; the .ipynb it writes has no outputs.
Usage: python tools/nbbuild.py notebooks/src/00_data_check.py notebooks/00_data_check.ipynb
A cell starting with '# %% [markdown]' is markdown; '# %% parameters' is the parameters cell.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat


def build(src: Path, dst: Path) -> None:
    text = "\n" + src.read_text(encoding="utf-8")
    chunks = text.split("\n# %%")
    cells = []
    for i, chunk in enumerate(chunks):
        if i == 0:
            if not chunk.strip():
                continue
            header, body = "", chunk
        else:
            header, _, body = chunk.partition("\n")
        header = header.strip()
        body = body.strip("\n")
        if header.startswith("[markdown]"):
            lines = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in body.splitlines()]
            cells.append(nbformat.v4.new_markdown_cell("\n".join(lines)))
        else:
            cell = nbformat.v4.new_code_cell(body)
            if header.startswith("parameters"):
                cell.metadata["tags"] = ["parameters"]
            cells.append(cell)
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    for i, c in enumerate(nb.cells):
        c["id"] = f"{dst.stem}-{i:02d}"  # stable ids keep diffs small
    nbformat.write(nb, str(dst))


if __name__ == "__main__":
    build(Path(sys.argv[1]), Path(sys.argv[2]))
