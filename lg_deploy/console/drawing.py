"""LangGraph's drawable graph JSON (`get_graph().to_json()`) as a layered SVG drawing."""

from __future__ import annotations

import hashlib
import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any, NamedTuple

START = "__start__"
END = "__end__"
CHAR_WIDTH = 7.5  # px per character of a 13px node label
EDGE_CHAR_WIDTH = 6.5  # px per character of an edge label
LABEL_PAD = 16
MIN_WIDTH = 80.0
NODE_HEIGHT = 36.0
GAP_X = 40.0
GAP_Y = 64.0
LOOP_REACH = 40.0  # how far an upward edge swings right of the boxes it passes
WAYPOINT_WIDTH = 16.0  # the room a long edge takes in each layer it crosses
MARGIN = 16.0

SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" class="graph" role="img" aria-labelledby="{id}-title"'
    ' viewBox="{view}" width="{w}" height="{h}"><title id="{id}-title">{title}</title>'
    '<defs><marker id="{id}-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8"'
    ' markerHeight="8" orient="auto"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>{parts}</svg>'
)


class _Edge(NamedTuple):
    source: str
    target: str
    label: str
    conditional: bool


class _Box(NamedTuple):
    x: float
    y: float
    w: float
    h: float


_Point = tuple[float, float]
_Curve = tuple[_Point, _Point, _Point, _Point]
_Bounds = tuple[float, float, float, float]


def graph_svg(drawing: Mapping[str, Any], *, title: str) -> str:
    """The drawing as an SVG document fragment (<svg>...</svg>), every text escaped."""
    nodes = _nodes(drawing.get("nodes"))
    edges = _edges(drawing.get("edges"), set(nodes))
    ident = "graph-" + hashlib.sha256(repr((title, nodes, edges)).encode()).hexdigest()[:12]
    if not nodes:
        empty = _text("node-label", 100, 30, "no nodes")
        return _document(ident, title, (0.0, 0.0, 200.0, 60.0), [empty])
    rows, via = _rows(nodes, edges)
    boxes = _boxes(rows, set(nodes))
    routes = [_route([boxes[hop] for hop in hops], boxes.values()) for hops in via]
    parts = [_edge_svg(ident, edge, route) for edge, route in zip(edges, routes, strict=True)]
    parts += [_node_svg(node, boxes[node]) for node in nodes]
    return _document(ident, title, _bounds(boxes.values(), edges, routes), parts)


def _nodes(raw: Any) -> list[str]:
    """The distinct node ids as text (LangGraph numbers nodes whose ids are UUIDs)."""
    ids = [str(node["id"]) for node in raw or () if isinstance(node, Mapping) and "id" in node]
    return list(dict.fromkeys(ids))


def _edges(raw: Any, known: set[str]) -> list[_Edge]:
    """The edges between known nodes, in input order; `data` becomes the edge's label."""
    edges = []
    for edge in (edge for edge in raw or () if isinstance(edge, Mapping)):
        data, ends = edge.get("data"), (str(edge.get("source")), str(edge.get("target")))
        label = "" if data is None else str(data)
        edges += [_Edge(*ends, label, bool(edge.get("conditional")))] if set(ends) <= known else []
    return edges


def _depth_first(nodes: list[str], edges: list[_Edge]) -> tuple[set[int], list[str]]:
    """Back edges' indexes and the nodes' finishing order, searching from __start__ first."""
    out = {node: [i for i, edge in enumerate(edges) if edge.source == node] for node in nodes}
    state: dict[str, bool] = {}  # False while on the search path, True once finished
    back: set[int] = set()
    finished: list[str] = []
    for root in sorted(nodes, key=lambda node: node != START):
        if root in state:
            continue
        state[root] = False
        stack = [(root, iter(out[root]))]
        while stack:
            node, pending = stack[-1]
            index = next(pending, -1)
            if index < 0:
                stack.pop()
                state[node] = True
                finished.append(node)
                continue
            target = edges[index].target
            if state.get(target) is False:
                back.add(index)
            elif target not in state:
                state[target] = False
                stack.append((target, iter(out[target])))
    return back, finished


def _layers(nodes: list[str], edges: list[_Edge]) -> dict[str, int]:
    """Each node's layer: its longest path without back edges; __end__ alone in the last."""
    back, finished = _depth_first(nodes, edges)
    rank = {node: place for place, node in enumerate(reversed(finished))}
    forward = [edge for index, edge in enumerate(edges) if index not in back]
    layer = dict.fromkeys(nodes, 0)
    for edge in sorted(forward, key=lambda edge: rank[edge.source]):
        layer[edge.target] = max(layer[edge.target], layer[edge.source] + 1)
    others = [depth for node, depth in layer.items() if node != END]
    if END in layer and others:
        layer[END] = max(others) + 1
    return layer


def _rows(nodes: list[str], edges: list[_Edge]) -> tuple[list[list[str]], list[list[str]]]:
    """The layers (nodes, long edges' waypoints) in barycentre order, and each edge's hops."""
    layer = _layers(nodes, edges)
    rows: list[list[str]] = [[] for _ in range(max(layer.values()) + 1)]
    for node in nodes:
        rows[layer[node]].append(node)
    parents: defaultdict[str, list[str]] = defaultdict(list)
    children: defaultdict[str, list[str]] = defaultdict(list)
    via = []
    for index, edge in enumerate(edges):
        crossed = range(layer[edge.source] + 1, layer[edge.target])
        waypoints = [f"\x00{index}.{depth}" for depth in crossed]  # NUL: never in drawable text
        for depth, waypoint in zip(crossed, waypoints, strict=True):
            rows[depth].append(waypoint)
        via.append([edge.source, *waypoints, edge.target])
        if layer[edge.target] > layer[edge.source]:
            for upper, lower in itertools.pairwise(via[-1]):
                parents[lower].append(upper)
                children[upper].append(lower)
    _sweep(rows, parents)
    _sweep(rows[::-1], children)
    return rows, via


def _sweep(rows: list[list[str]], links: Mapping[str, list[str]]) -> None:
    """Sort each row but the first in place by the mean place of its members' links."""
    place = {node: index for row in rows for index, node in enumerate(row)}
    for row in rows[1:]:
        mean = {n: sum(place[m] for m in links[n]) / len(links[n]) for n in row if links.get(n)}
        row.sort(key=lambda node: mean.get(node, place[node]))
        place.update({node: index for index, node in enumerate(row)})


def _boxes(rows: list[list[str]], nodes: set[str]) -> dict[str, _Box]:
    """Each node's and waypoint's box, in centred rows, a node's as wide as its label."""
    widths = dict.fromkeys(itertools.chain(*rows), WAYPOINT_WIDTH)
    widths.update({node: max(MIN_WIDTH, len(node) * CHAR_WIDTH + 2 * LABEL_PAD) for node in nodes})
    spans = [sum(widths[hop] for hop in row) + GAP_X * max(len(row) - 1, 0) for row in rows]
    boxes = {}
    for depth, row in enumerate(rows):
        x = (max(spans) - spans[depth]) / 2
        for hop in row:
            boxes[hop] = _Box(x, depth * (NODE_HEIGHT + GAP_Y), widths[hop], NODE_HEIGHT)
            x += widths[hop] + GAP_X
    return boxes


def _route(hops: list[_Box], boxes: Iterable[_Box]) -> list[_Curve]:
    """The beziers from the source's bottom through the waypoints to the target's top, or a loop."""
    source, target = hops[0], hops[-1]
    if target.y <= source.y:
        return [_loop(source, target, boxes)]
    curves: list[_Curve] = []
    for upper, lower in itertools.pairwise(hops):
        if curves:  # straight down through the waypoint's row
            top, bottom = _ends(upper)
            curves.append((top, top, bottom, bottom))
        (x0, y0), (x1, y1) = _ends(upper)[1], _ends(lower)[0]
        bend = (y1 - y0) / 2
        curves.append(((x0, y0), (x0, y0 + bend), (x1, y1 - bend), (x1, y1)))
    return curves


def _loop(source: _Box, target: _Box, boxes: Iterable[_Box]) -> _Curve:
    """An upward bezier from the source's right side to the target's, right of boxes between."""
    start = (source.x + source.w, source.y + source.h * 2 / 3)
    end = (target.x + target.w, target.y + target.h / 3)
    passed = [box for box in boxes if target.y <= box.y <= source.y] if source != target else []
    out = max([start[0], end[0], *(box.x + box.w for box in passed)]) + LOOP_REACH
    bulge = source.h if source == target else 0  # spread, a self-loop is round
    return start, (out, start[1] + bulge), (out, end[1] - bulge), end


def _ends(box: _Box) -> tuple[_Point, _Point]:
    """The box's top centre and bottom centre."""
    return (box.x + box.w / 2, box.y), (box.x + box.w / 2, box.y + box.h)


def _middle(curve: _Curve) -> _Point:
    """The bezier's point at t = 1/2."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = curve
    return (x0 + 3 * x1 + 3 * x2 + x3) / 8, (y0 + 3 * y1 + 3 * y2 + y3) / 8


def _bounds(boxes: Iterable[_Box], edges: list[_Edge], routes: list[list[_Curve]]) -> _Bounds:
    """The (left, top, right, bottom) around boxes, control points and edge labels, plus margin."""
    points = [point for box in boxes for point in ((box.x, box.y), (box.x + box.w, box.y + box.h))]
    points += [point for route in routes for curve in route for point in curve]
    for edge, route in zip(edges, routes, strict=True):
        (x, y), half = _middle(route[0]), len(edge.label) * EDGE_CHAR_WIDTH / 2
        points += [(x - half, y - 16), (x + half, y)] if edge.label else []
    xs, ys = [x for x, _ in points], [y for _, y in points]
    return min(xs) - MARGIN, min(ys) - MARGIN, max(xs) + MARGIN, max(ys) + MARGIN


def _document(ident: str, title: str, bounds: _Bounds, parts: list[str]) -> str:
    """The <svg> element around the parts, titled and with the arrowhead marker."""
    left, top, right, bottom = bounds
    width, height = _num(right - left), _num(bottom - top)
    view = f"{_num(left)} {_num(top)} {width} {height}"
    title = escape(title, quote=True)
    return SVG.format(id=ident, view=view, w=width, h=height, title=title, parts="".join(parts))


def _edge_svg(ident: str, edge: _Edge, route: list[_Curve]) -> str:
    """The edge's path with the arrowhead, and its label near its first bezier's middle."""
    d = f"M{_point(route[0][0])}" + "".join(
        f" C{_point(c1)} {_point(c2)} {_point(end)}" for _, c1, c2, end in route
    )
    kind = "edge edge-conditional" if edge.conditional else "edge"
    path = f'<path class="{kind}" d="{d}" marker-end="url(#{ident}-arrow)"/>'
    if not edge.label:
        return path
    x, y = _middle(route[0])
    return path + _text("edge-label", x, y - 4, edge.label)


def _node_svg(node: str, box: _Box) -> str:
    """The node as a group of a rounded box and its centred label."""
    kind = {START: "node node-start", END: "node node-end"}.get(node, "node")
    place = f'x="{_num(box.x)}" y="{_num(box.y)}" width="{_num(box.w)}" height="{_num(box.h)}"'
    rect = f'<rect {place} rx="8"/>'
    label = _text("node-label", box.x + box.w / 2, box.y + box.h / 2, node)
    return f'<g class="{kind}">{rect}{label}</g>'


def _text(kind: str, x: float, y: float, text: str) -> str:
    """A <text> of this class centred on (x, y) by the page's CSS, its content escaped."""
    return f'<text class="{kind}" x="{_num(x)}" y="{_num(y)}">{escape(text, quote=True)}</text>'


def _num(value: float) -> str:
    """The number with at most one decimal and no trailing zeros ("12", "12.5", "-3")."""
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _point(point: _Point) -> str:
    """The point as SVG path coordinates ("12,30.5")."""
    return f"{_num(point[0])},{_num(point[1])}"
