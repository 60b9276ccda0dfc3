"""Reading a model config's value by its dotted key, as the methods' reference-value tables name them."""

from __future__ import annotations


def value_at(tree: dict, dotted: str, sep: str = ".") -> object:
    """``tree["a"]["b"]["c"]`` for ``dotted`` ``"a.b.c"`` (keys split at ``sep``)."""
    node = tree
    for key in dotted.split(sep):
        node = node[key]
    return node
