"""Algorithm name (``checkpoint["lightq"]["algorithm"]``) -> class, to rebuild a module from a checkpoint.

Built from the subclasses of ``OffPolicyAlgorithm`` at call time, so an algorithm defined anywhere (and
imported) is found without editing a list.
"""

from __future__ import annotations

import lightq.algos  # noqa: F401  imports every shipped algorithm
from lightq.algos.base import OffPolicyAlgorithm

__all__ = ["algorithm_class", "algorithm_classes"]


def algorithm_classes() -> dict[str, type[OffPolicyAlgorithm]]:
    found: dict[str, type[OffPolicyAlgorithm]] = {}
    todo = list(OffPolicyAlgorithm.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        name = cls.__dict__.get("algorithm_name")  # declared by the class itself, not inherited
        if name and name != "base":
            found.setdefault(name, cls)
    return found


def algorithm_class(name: str) -> type[OffPolicyAlgorithm]:
    classes = algorithm_classes()
    if name not in classes:
        raise ValueError(f"Unknown lightq algorithm {name!r}; known: {', '.join(sorted(classes))}.")
    return classes[name]
