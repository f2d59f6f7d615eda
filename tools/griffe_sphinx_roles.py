"""Griffe extension for the API reference: render genflow's reST idioms in Markdown.

genflow's docstrings are Google style but cross-reference with Sphinx roles
(``:class:`~genflow.train.Trainer```, ``:meth:`draw```), which Markdown would
show literally. When mkdocstrings loads the package, this extension rewrites
each role into an *optional* autorefs link: a link when the target is
documented somewhere on the site, plain code otherwise (no warning, so strict
builds keep passing). Only the copy of the docstring that mkdocstrings renders
is changed; the source files are not touched.

Targets are resolved roughly as Sphinx does: a name looked up in the
enclosing class, then in the module (following imports), else the dotted path as written.
A leading ``~`` shows only the last component.

reST "simple tables" (rows between ``=====  =====`` rules), which Markdown would
run together into one paragraph, are shown as preformatted text (a role inside
one becomes its plain name).

Configured in ``mkdocs.yml`` (``plugins.mkdocstrings.handlers.python.options.extensions``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

RULE = re.compile(r"^\s*=+( +=+)+\s*$")
ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|exc|obj):`(?P<tilde>~?)(?P<target>[\w.]+)(?:\(\))?`")


def _title(match: re.Match[str]) -> str:
    target = match["target"]
    return target.rsplit(".", 1)[-1] if match["tilde"] else target


def _fence_tables(text: str) -> str:
    """Wrap each reST simple table (three ``===`` rules: top, under the header, bottom) in a text fence."""
    out: list[str] = []
    rules = 0
    for line in text.splitlines():
        if RULE.match(line):
            indent = line[: len(line) - len(line.lstrip())]
            if rules == 0:
                out += ["", f"{indent}```text"]
            out.append(line)
            rules += 1
            if rules == 3:
                out += [f"{indent}```", ""]
                rules = 0
        elif rules:
            out.append(ROLE.sub(lambda m: f"``{_title(m)}``", line))
        else:
            out.append(line)
    return "\n".join(out) if rules == 0 else text  # an unclosed table is left as it was


def _member_path(scope: griffe.Object | griffe.Alias, parts: list[str]) -> str | None:
    """Path of ``scope.<parts>``, following imports by their target path (no resolution needed)."""
    node: Any = scope
    for i, part in enumerate(parts):
        members = getattr(node, "members", None)
        if members is None or part not in members:
            return None
        node = members[part]
        if isinstance(node, griffe.Alias):
            rest = parts[i + 1 :]
            return ".".join([node.target_path, *rest])
    return node.path


def _resolve(obj: griffe.Object, target: str) -> str:
    parts = target.split(".")
    scope: Any = obj
    while scope is not None:  # the object itself, its class, its module, the parent packages
        if getattr(scope, "kind", None) in (griffe.Kind.CLASS, griffe.Kind.MODULE):
            path = _member_path(scope, parts)
            if path is not None:
                return path
        scope = scope.parent
    return target  # an absolute path (genflow.x.Y) or an external object (scipy.linalg.sqrtm)


class SphinxRoles(griffe.Extension):
    """Rewrite the Sphinx roles and reST tables in every docstring of the loaded package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        self._visit(pkg, seen=set())

    def _visit(self, obj: griffe.Object, seen: set[str]) -> None:
        if obj.path in seen:
            return
        seen.add(obj.path)
        if obj.docstring is not None:
            value = _fence_tables(obj.docstring.value)
            obj.docstring.value = ROLE.sub(lambda m: self._link(obj, m), value)
        for member in obj.members.values():
            if not isinstance(member, griffe.Alias):
                self._visit(member, seen)

    @staticmethod
    def _link(obj: griffe.Object, match: re.Match[str]) -> str:
        return f'<autoref identifier="{_resolve(obj, match["target"])}" optional><code>{_title(match)}</code></autoref>'
