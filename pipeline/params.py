"""Rule ``params`` in canonical form, so that only a change of value reruns a job.

Snakemake's params trigger compares the ``repr`` of each param with the recorded one: a dict whose keys come
in another order (a reordered config file, a default written out explicitly, which moves the key) or ``5``
written for ``5.0`` would rerun a job whose result cannot change. Numbers are made canonical when the config
is validated (:func:`pipeline.config.validate_config`: a ``number`` key holds a float); :func:`canonical`
sorts the keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def canonical(value: Any) -> Any:
    """``value`` with every mapping's keys sorted (recursively) and tuples as lists.

    List order is kept: it carries meaning (the order of the training mix is the order its sources are drawn).
    """
    if isinstance(value, Mapping):
        return {str(k): canonical(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return value
