#!/usr/bin/env python3
"""Checks of the code's layout that anyone can run (scripts/test.sh runs them):

- the modules of crates/tandem/src import one way: no module imports one that imports it
  back (directly or through others);
- no source file in crates/ or bench/ is longer than 900 lines.

Exits non-zero and says what is wrong.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAX_LINES = 900


def module_graph(src):
    mods = {}
    for p in sorted(src.iterdir()):
        name = p.stem if p.is_file() else p.name
        if p.is_file() and p.suffix != ".rs" or name == "main":
            continue
        files = [p] if p.is_file() else sorted(p.rglob("*.rs"))
        text = "".join(f.read_text() for f in files)
        mods[name] = {m for m in re.findall(r"crate::([a-z_]+)", text)} - {name}
    for m in mods:
        mods[m] &= set(mods)
    return mods


def cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    ok = True
    graph = module_graph(ROOT / "crates/tandem/src")
    for comp in cycles(graph):
        ok = False
        print(f"crates/tandem/src: modules import each other in a circle: {', '.join(comp)}")
        for m in comp:
            print(f"  {m} -> {', '.join(sorted(graph[m] & set(comp)))}")
    for base in ["crates", "bench"]:
        for f in sorted((ROOT / base).rglob("*.rs")):
            if "target" in f.parts:
                continue
            n = sum(1 for _ in f.open())
            if n > MAX_LINES:
                ok = False
                print(f"{f.relative_to(ROOT)}: {n} lines (more than {MAX_LINES}: split it by concern)")
    if ok:
        print("layout: modules import one way; no file above", MAX_LINES, "lines")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
