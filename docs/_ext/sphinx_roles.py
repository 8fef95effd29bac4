"""A griffe extension for the API pages: the docstrings' Sphinx roles (``:func:`harness.x.y```, ``:class:`~a.B```)
become inline code (``x.y``, ``B``), as Sphinx would show them, instead of the literal role markup."""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|obj|exc|const):`(~?)([^`<]+?)(?:\s*<([^>]+)>)?`")


def _code(match: re.Match) -> str:
    tilde, target, explicit = match.groups()
    text = target if explicit is None else target.strip()
    if explicit is None and tilde:
        text = target.rsplit(".", 1)[-1]
    return f"`{text}`"


def plain(text: str) -> str:
    """``text`` with every Sphinx cross-reference role as inline code (double backticks → single: Markdown)."""
    return ROLE.sub(_code, text).replace("``", "`")


class SphinxRoles(griffe.Extension):
    def on_object(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)
