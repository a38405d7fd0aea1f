"""
Fails when any of the project's modules import each other in a cycle, counting imports placed inside
functions (the ones that usually hide a cycle) and ignoring `if TYPE_CHECKING:` imports, which never
run. import-linter's contracts (pyproject.toml) say which way imports point; this says there is no
loop anywhere, at module level.

    python scripts/import_cycles.py        # prints each cycle, exits 1 if there is one
"""

import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["config", "core", "whatsapp", "contacts", "templates_app", "ai", "assistant", "analytics", "monitoring",
            "demo"]


def strongly_connected(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; returns the groups of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root) & modules)))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child) & modules))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def main() -> int:
    sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)
    modules = {module for module in graph.modules if ".migrations" not in module}
    groups = strongly_connected(graph, modules)
    for group in groups:
        print(f"cycle of {len(group)} modules:")
        for module in group:
            inside = sorted(graph.find_modules_directly_imported_by(module) & set(group))
            print(f"  {module} -> {', '.join(inside)}")
    print(f"{len(modules)} modules, {len(groups)} import cycle(s)")
    return 1 if groups else 0


if __name__ == "__main__":
    sys.exit(main())
