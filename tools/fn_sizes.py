"""Print the length in lines of every function in the given files, longest first.

Usage: ``python tools/fn_sizes.py FILE... [--over N]`` (default: all functions).
"""

from __future__ import annotations

import ast
import sys


def sizes(path: str) -> list[tuple[int, str]]:
    tree = ast.parse(open(path, encoding="utf-8").read())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append((node.end_lineno - node.lineno + 1, f"{path}:{node.lineno} {node.name}"))
    return sorted(out, reverse=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    over = 0
    if "--over" in args:
        i = args.index("--over")
        over = int(args[i + 1])
        del args[i : i + 2]
    for path in args:
        for n, name in sizes(path):
            if n > over:
                print(f"{n:5d}  {name}")
