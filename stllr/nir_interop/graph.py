"""Graph-level helpers of the NIR import: nested sub-graphs flattened, who wrote a graph.

A NIR graph may hold a ``NIRGraph`` as a node (snnTorch and the toolkit write a
recurrent layer so: ``input → lif``, ``lif → rec → lif``, ``lif → output``). The edges
into a nested graph reach its ``Input`` node's successors and the edges out of it leave
from its ``Output`` node's predecessors; its other nodes are named ``<graph>.<node>``.
"""

from __future__ import annotations

import numpy as np

from stllr.errors import UserError


def _kind(node) -> str:
    return type(node).__name__


def _port(end: str, node: str, others: dict) -> bool:
    """Whether an edge end addresses the nested graph ``node``: its name, or a port
    ``node.<input/output name>`` that is not the name of another node."""
    return end == node or (end.startswith(f"{node}.") and end not in others)


def flatten(nodes: dict, edges: list[tuple[str, str]]) -> tuple[dict, list[tuple[str, str]]]:
    """``(nodes, edges)`` with every nested ``NIRGraph`` node replaced by its contents."""
    nodes, edges = dict(nodes), list(edges)
    while True:
        nested = [n for n, v in nodes.items() if _kind(v) == "NIRGraph"]
        if not nested:
            return nodes, edges
        name = nested[0]
        sub = nodes.pop(name)
        inner_nodes, inner_edges = flatten(sub.nodes, sub.edges)
        ins = [n for n, v in inner_nodes.items() if _kind(v) == "Input"]
        outs = [n for n, v in inner_nodes.items() if _kind(v) == "Output"]
        if len(ins) != 1 or len(outs) != 1:
            raise UserError(
                f"NIR node '{name}' (NIRGraph): a nested graph needs one Input and one Output "
                f"node, got {ins} and {outs}"
            )
        full = {n: f"{name}.{n}" for n in inner_nodes}
        heads = [full[b] for a, b in inner_edges if a == ins[0]]
        tails = [full[a] for a, b in inner_edges if b == outs[0]]
        new_edges = [(full[a], full[b]) for a, b in inner_edges if a != ins[0] and b != outs[0]]
        for a, b in edges:
            if _port(b, name, nodes):
                new_edges += [(a, h) for h in heads]
            elif _port(a, name, nodes):
                new_edges += [(t, b) for t in tails]
            else:
                new_edges.append((a, b))
        for n, v in inner_nodes.items():
            if n not in (ins[0], outs[0]):
                nodes[full[n]] = v
        edges = new_edges


def producer(metadata: dict | None) -> str:
    """Which framework wrote a graph, as its metadata says ("" when it does not say)."""
    meta = metadata or {}
    for key in ("producer", "framework", "source", "generator", "library"):
        if key in meta:
            value = meta[key]
            value = value.decode() if isinstance(value, bytes) else value
            return str(np.asarray(value).item() if isinstance(value, np.ndarray) else value)
    return ""
