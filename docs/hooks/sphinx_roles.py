"""Griffe extension for the API reference: the docstrings name code with Sphinx roles
(``:class:`~snnbench.noise.NoiseSpec```); Markdown shows each as inline code (``NoiseSpec``)."""

import re

import griffe

ROLE = re.compile(r":(?:mod|class|func|meth|attr|data|exc|obj):`(~?)([^`]+)`")


def _as_code(match: re.Match) -> str:
    shorten, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if shorten else target}`"


class SphinxRolesAsCode(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **_) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_as_code, obj.docstring.value)
