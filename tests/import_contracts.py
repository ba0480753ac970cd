"""An import-linter contract type (``.importlinter``): no import cycle between any of our modules.

The layers contract lets modules of one layer import each other; this one makes sure none of those imports
(or any other, inside a function or not) closes a cycle. Module-level strongly connected components of the
graph that import-linter builds; each one found is printed with its imports.
"""

from __future__ import annotations

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


def module_cycles(graph: ImportGraph, prefixes: tuple[str, ...]) -> list[list[str]]:
    """The strongly connected components of more than one module (iterative Tarjan)."""
    mods = sorted(m for m in graph.modules if m.startswith(prefixes))
    edges = {m: sorted(i for i in graph.find_modules_directly_imported_by(m) if i.startswith(prefixes)) for m in mods}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in mods:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            if i < len(edges[node]):
                work.append((node, i + 1))
                nxt = edges[node][i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


class AcyclicModulesContract(Contract):
    type_name = "acyclic_modules"

    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        prefixes = tuple(self.packages)  # type: ignore[arg-type]
        cycles = module_cycles(graph, prefixes)
        details = []
        for comp in cycles:
            members = set(comp)
            details.append([(a, b) for a in comp for b in sorted(graph.find_modules_directly_imported_by(a)) if b in members])
        return ContractCheck(kept=not cycles, warnings=None, metadata={"cycles": details})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for edges in check.metadata["cycles"]:
            output.print_error("import cycle:")
            for importer, imported in edges:
                output.indent_cursor()
                output.print(f"{importer} -> {imported}")
            output.new_line()
