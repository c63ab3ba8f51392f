"""The package's import graph has no circles, down to single modules: import-linter's contracts
(``make lint``) keep the layers between packages; this also catches a package's ``__init__`` and
one of its own modules importing each other."""

from __future__ import annotations

import grimp


def test_no_module_imports_itself_through_others():
    graph = grimp.build_graph("genbatch")
    circles = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back:
                circles.append(" -> ".join((importer, *back)))
    assert circles == []
