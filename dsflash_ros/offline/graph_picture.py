"""The scene graph as a node-link picture: objects are nodes in their class colour (the
palette of :mod:`dsflash_ros.visualize`, so the picture matches the overlay), relations are
arrows subject -> object labelled with the predicate.

Drawn with networkx (graph, node order, arrows) and matplotlib's Agg canvas directly (no
pyplot: no global figure state, no display needed, safe in worker threads). Nodes sit on a
circle, related objects next to each other. Objects without relations are left out once
the picture would exceed ``max_nodes``; both directions of a pair are drawn as two arcs
bending apart so their labels do not overlap.
"""

from __future__ import annotations

import math
from pathlib import Path

import networkx as nx
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dsflash_ros.runtime.result import SceneGraphResult
from dsflash_ros.visualize import class_color

_ARC = 0.18  # arc3 bend of the edges (fraction of the edge length)
_NODE_SIZE = 500  # points^2: the circle of a node (holds its id); arrows stop at it
_LABEL_GAP = 0.09  # class names sit this far outside the circle of nodes


def _node_set(result: SceneGraphResult, max_nodes: int, max_edges: int) -> tuple[set[int], list]:
    """Objects and relations to draw: the strongest ``max_edges`` relations whose ends fit in
    ``max_nodes``, then unrelated objects by score while room is left."""
    nodes: set[int] = set()
    edges = []
    for r in result.relations():
        if len(edges) >= max_edges:
            break
        new = {r.subject_id, r.object_id} - nodes
        if len(nodes) + len(new) > max_nodes:
            continue
        nodes |= new
        edges.append(r)
    by_score = sorted(result.objects(), key=lambda o: -o.score)
    for o in by_score:
        if len(nodes) >= max_nodes:
            break
        nodes.add(o.id)
    return nodes, edges


def _text_color(rgb: tuple[int, int, int]) -> str:
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return "black" if luminance > 140 else "white"


def _arc_midpoint(p: np.ndarray, q: np.ndarray, rad: float) -> np.ndarray:
    """Midpoint of matplotlib's ``arc3,rad=rad`` curve from p to q (equal-aspect axes)."""
    d = q - p
    return (p + q) / 2 + 0.5 * rad * np.array([d[1], -d[0]])


def _circle_order(graph: nx.MultiDiGraph) -> list[int]:
    """Nodes in breadth-first order per connected component (largest first), so related
    objects sit next to each other on the circle and few edges cross it."""
    undirected = nx.Graph(graph)
    order: list[int] = []
    components = sorted(nx.connected_components(undirected), key=lambda c: (-len(c), min(c)))
    for comp in components:
        root = max(sorted(comp), key=undirected.degree)
        order.extend(nx.bfs_tree(undirected, root, sort_neighbors=sorted).nodes)
    return order


def _layout(graph: nx.MultiDiGraph) -> dict[int, np.ndarray]:
    """Nodes on a circle in :func:`_circle_order`. A force layout was tried and dropped: it
    stacks nodes on top of each other for the dense graphs a scene produces."""
    order = _circle_order(graph)
    angles = np.pi / 2 - 2 * np.pi * np.arange(len(order)) / max(len(order), 1)
    return {n: np.array([np.cos(a), np.sin(a)]) for n, a in zip(order, angles)}


def _empty_figure(result: SceneGraphResult, fig: Figure) -> None:
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.text(0.5, 0.55, "no relations", ha="center", va="center", fontsize=22, color="0.3")
    names = [o.class_name for o in sorted(result.objects(), key=lambda o: -o.score)]
    detail = f"{len(names)} objects" + (": " + ", ".join(names[:8]) if names else "")
    if len(names) > 8:
        detail += ", ..."
    ax.text(0.5, 0.38, detail, ha="center", va="center", fontsize=10, color="0.4", wrap=True)


def render_graph(
    result: SceneGraphResult,
    max_nodes: int = 30,
    max_edges: int = 60,
    title: str | None = None,
    dpi: int = 100,
) -> Figure:
    """A matplotlib ``Figure`` (Agg canvas attached) of the scene graph."""
    nodes, edges = _node_set(result, max_nodes, max_edges)
    side = 4.0 + 1.3 * math.sqrt(max(len(nodes), 1))  # inches: grows with the node count
    fig = Figure(figsize=(side * 1.25, side) if edges else (6.0, 3.0), dpi=dpi)
    FigureCanvasAgg(fig)
    if not edges:
        _empty_figure(result, fig)
        return fig

    objects = {o.id: o for o in result.objects()}
    graph = nx.MultiDiGraph()
    graph.add_nodes_from(sorted(nodes))
    for r in edges:
        graph.add_edge(r.subject_id, r.object_id, label=r.predicate, score=r.score)
    pos = _layout(graph)

    ax = fig.add_axes((0.02, 0.02, 0.96, 0.90 if title else 0.96))
    ax.set_axis_off()
    ax.set_aspect("equal")
    colors = [np.array(class_color(objects[n].class_id)) / 255.0 for n in graph.nodes]
    nx.draw_networkx_nodes(
        graph, pos, ax=ax, node_size=_NODE_SIZE, node_color=colors, edgecolors="0.2"
    )
    scores = [d["score"] for _, _, d in graph.edges(data=True)]
    widths = [0.8 + 2.2 * s for s in scores]  # stronger relations, thicker arrows
    nx.draw_networkx_edges(
        graph,
        pos,
        ax=ax,
        node_size=_NODE_SIZE,
        arrows=True,
        arrowstyle="-|>",
        arrowsize=14,
        width=widths,
        edge_color="0.35",
        connectionstyle=f"arc3,rad={_ARC}",
    )
    for n in graph.nodes:
        o = objects[n]
        x, y = pos[n]
        ax.text(x, y, str(o.id), ha="center", va="center", fontsize=8, zorder=5,
                color=_text_color(class_color(o.class_id)))  # fmt: skip
        # class name outside the circle, radially: never on top of arrows or other nodes
        ax.text(
            x * (1 + _LABEL_GAP),
            y * (1 + _LABEL_GAP),
            o.class_name,
            ha="left" if x > 0.3 else "right" if x < -0.3 else "center",
            va="bottom" if y > 0.3 else "top" if y < -0.3 else "center",
            fontsize=9,
            zorder=5,
        )
    for s, t, d in graph.edges(data=True):
        mid = _arc_midpoint(pos[s], pos[t], _ARC)
        ax.text(
            *mid,
            f"{d['label']} {d['score']:.2f}",
            ha="center",
            va="center",
            fontsize=7,
            zorder=6,
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "0.7", "alpha": 0.85},
        )
    ax.set_xlim(-1.75, 1.75)  # room for the class names outside the unit circle
    ax.set_ylim(-1.35, 1.35)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def graph_image(result: SceneGraphResult, **kwargs: object) -> np.ndarray:
    """The picture as an (H, W, 3) uint8 RGB array."""
    fig = render_graph(result, **kwargs)  # type: ignore[arg-type]
    canvas = fig.canvas
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return rgba[..., :3].copy()


def save_graph_png(result: SceneGraphResult, path: str | Path, **kwargs: object) -> Path:
    """Write the picture as a PNG and return its path."""
    path = Path(path)
    fig = render_graph(result, **kwargs)  # type: ignore[arg-type]
    fig.savefig(path, format="png", facecolor="white")
    return path
