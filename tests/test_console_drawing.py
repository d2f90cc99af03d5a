"""The console's graph drawing: LangGraph's drawable JSON as an escaped, layered SVG."""

from __future__ import annotations

import copy
import re
import xml.etree.ElementTree as ET
from collections import Counter
from typing import Any, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from lg_deploy.console.drawing import graph_svg

pytestmark = pytest.mark.req("CONSOLE-THREADS-GRAPHS")

NS = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert(1)</script>&\"'"
CLASSES = {
    "graph",
    "node",
    "node-start",
    "node-end",
    "node-label",
    "edge",
    "edge-conditional",
    "edge-label",
}
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


class State(TypedDict):
    n: int


def step(state: State) -> dict[str, Any]:
    """A node that changes nothing."""
    return {}


def route(state: State) -> str:
    """A router; only its path map matters to the drawing."""
    return "done"


def chain(*names: str) -> StateGraph[State]:
    """A StateGraph whose nodes run in this order from START to END."""
    builder = StateGraph(State)
    for name in names:
        builder.add_node(name, step)
    for source, target in zip([START, *names], [*names, END], strict=True):
        builder.add_edge(source, target)
    return builder


def branching() -> StateGraph[State]:
    """a branches (labelled) to b or c, which both end."""
    builder = StateGraph(State)
    for name in ("a", "b", "c"):
        builder.add_node(name, step)
    builder.add_edge(START, "a")
    builder.add_conditional_edges("a", route, {"left": "b", "right": "c"})
    builder.add_edge("b", END)
    builder.add_edge("c", END)
    return builder


def looping() -> StateGraph[State]:
    """agent -> tools -> agent until agent routes to END, and tools may call itself again."""
    builder = StateGraph(State)
    builder.add_node("agent", step)
    builder.add_node("tools", step)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", route, {"call": "tools", "done": END})
    builder.add_conditional_edges("tools", route, {"again": "tools", "back": "agent"})
    return builder


def drawn(builder: StateGraph[State]) -> dict[str, Any]:
    """The builder compiled and drawn as the console gets it."""
    return builder.compile().get_graph(xray=False).to_json()


def parse(svg: str) -> ET.Element:
    """The SVG parsed as XML (which fails on anything unescaped)."""
    return ET.fromstring(svg)


def node_ids(drawing: dict[str, Any]) -> list[str]:
    """The drawing's node ids as text."""
    return [str(node["id"]) for node in drawing["nodes"]]


def edge_paths(root: ET.Element) -> list[ET.Element]:
    """The edges' paths (not the arrowhead's, which has no class)."""
    return [path for path in root.iter(f"{NS}path") if path.get("class")]


def boxes(root: ET.Element) -> dict[str, tuple[float, float, float, float]]:
    """Each node's label -> its rect (x, y, width, height)."""
    found: dict[str, tuple[float, float, float, float]] = {}
    for group in root.iter(f"{NS}g"):
        rect, label = group.find(f"{NS}rect"), group.find(f"{NS}text")
        assert rect is not None
        assert label is not None
        assert label.text is not None
        x, y, width, height = (float(rect.get(key, "nan")) for key in ("x", "y", "width", "height"))
        found[label.text] = (x, y, width, height)
    return found


def points(path: ET.Element) -> list[tuple[float, float]]:
    """Every point (ends and control points) of a path's d."""
    numbers = [float(n) for n in NUMBER.findall(path.get("d", ""))]
    return list(zip(numbers[::2], numbers[1::2], strict=True))


def ends(path: ET.Element) -> tuple[float, float, float, float]:
    """The first point's x, y and the last point's x, y of a path's d."""
    (x0, y0), (x1, y1) = points(path)[0], points(path)[-1]
    return x0, y0, x1, y1


@pytest.mark.parametrize("builder", [chain("a", "b"), branching(), looping()])
def test_every_node_id_is_drawn_once_as_its_label(builder: StateGraph[State]) -> None:
    """Each node id is the text of exactly one node label and of no other text."""
    drawing = drawn(builder)
    root = parse(graph_svg(drawing, title="g"))
    labels = [t.text for t in root.iter(f"{NS}text") if t.get("class") == "node-label"]
    every_text = Counter(t.text for t in root.iter(f"{NS}text"))
    assert Counter(labels) == Counter(node_ids(drawing))
    assert all(every_text[node] == 1 for node in node_ids(drawing))


def test_a_chain_goes_down_layer_by_layer() -> None:
    """On start -> a -> b -> end every node sits strictly lower than the one before it."""
    found = boxes(parse(graph_svg(drawn(chain("a", "b")), title="chain")))
    ys = [found[node][1] for node in (START, "a", "b", END)]
    assert ys == sorted(set(ys))


def test_each_edge_is_one_path_classed_by_whether_it_is_conditional() -> None:
    """One arrowed path per edge, "edge-conditional" iff conditional; branch names label them."""
    drawing = drawn(branching())
    root = parse(graph_svg(drawing, title="branching"))
    paths = edge_paths(root)
    markers = list(root.iter(f"{NS}marker"))
    assert len(paths) == len(drawing["edges"]) == 5
    for edge, path in zip(drawing["edges"], paths, strict=True):
        classes = set(path.get("class", "").split())
        assert "edge" in classes
        assert ("edge-conditional" in classes) == bool(edge.get("conditional"))
        assert path.get("marker-end") == f"url(#{markers[0].get('id')})"
    assert len(markers) == 1
    edge_labels = [t.text or "" for t in root.iter(f"{NS}text") if t.get("class") == "edge-label"]
    assert sorted(edge_labels) == ["left", "right"]


def test_siblings_share_a_layer_below_their_parent() -> None:
    """Both branches of a sit in one layer under a, side by side, above __end__."""
    found = boxes(parse(graph_svg(drawn(branching()), title="branching")))
    assert found["b"][1] == found["c"][1] > found["a"][1]
    assert found[END][1] > found["b"][1]
    assert (
        found["b"][0] + found["b"][2] <= found["c"][0]
        or found["c"][0] + found["c"][2] <= found["b"][0]
    )


def test_a_layer_is_ordered_by_its_parents_places() -> None:
    """Children listed against their parents' order are placed under them, so no edges cross."""
    drawing = {
        "nodes": [{"id": n} for n in (START, "p", "q", "under_q", "under_p", END)],
        "edges": [
            {"source": START, "target": "p"},
            {"source": START, "target": "q"},
            {"source": "p", "target": "under_p"},
            {"source": "q", "target": "under_q"},
            {"source": "under_p", "target": END},
            {"source": "under_q", "target": END},
        ],
    }
    found = boxes(parse(graph_svg(drawing, title="order")))
    assert (found["p"][0] < found["q"][0]) == (found["under_p"][0] < found["under_q"][0])


def test_forward_edges_run_from_bottom_centre_to_top_centre() -> None:
    """Edges run bottom centre to top centre; one skipping a layer goes round, not through, b."""
    builder = chain("a", "b")
    builder.add_conditional_edges("a", route, {"skip": END, "on": "b"})
    drawing = drawn(builder)
    root = parse(graph_svg(drawing, title="skip"))
    found = boxes(root)
    pairs = [(edge["source"], edge["target"]) for edge in drawing["edges"]]
    paths = dict(zip(pairs, edge_paths(root), strict=True))
    for (source, target), path in paths.items():
        (sx, sy, sw, sh), (tx, ty, tw, _) = found[source], found[target]
        assert ends(path) == pytest.approx((sx + sw / 2, sy + sh, tx + tw / 2, ty), abs=0.1)
    bx, by, bw, bh = found["b"]
    beside_b = [x for x, y in points(paths[("a", END)]) if by <= y <= by + bh]
    assert beside_b
    assert all(x < bx or x > bx + bw for x in beside_b)


def test_a_cycle_is_drawn_with_its_back_edges_going_up() -> None:
    """A loop back and a self-loop neither hang nor crash, are drawn going up, keep the layers."""
    drawing = drawn(looping())
    root = parse(graph_svg(drawing, title="loop"))
    found = boxes(root)
    pairs = [(edge["source"], edge["target"]) for edge in drawing["edges"]]
    paths = dict(zip(pairs, edge_paths(root), strict=True))
    assert found[START][1] < found["agent"][1] < found["tools"][1] < found[END][1]
    for back in [("tools", "agent"), ("tools", "tools")]:
        _, start_y, _, end_y = ends(paths[back])
        assert end_y <= start_y


def test_a_cycle_unreachable_from_start_is_still_drawn() -> None:
    """Nodes in a cycle no path from __start__ reaches, and a lone node, are drawn too."""
    drawing = {
        "nodes": [{"id": START}, {"id": "x"}, {"id": "y"}, {"id": "lone"}, {"id": END}],
        "edges": [
            {"source": START, "target": END},
            {"source": "x", "target": "y"},
            {"source": "y", "target": "x", "conditional": True},
        ],
    }
    root = parse(graph_svg(drawing, title="islands"))
    assert set(boxes(root)) == {START, "x", "y", "lone", END}
    assert len(edge_paths(root)) == 3


def test_hostile_names_are_escaped() -> None:
    """Markup in a node name and the title is escaped: no raw <script>, the text parses back."""
    builder = chain("a", HOSTILE)
    builder.add_conditional_edges("a", route, {HOSTILE: HOSTILE, "done": END})
    svg = graph_svg(drawn(builder), title=f"graph {HOSTILE}")
    assert "<script" not in svg
    assert "&lt;script&gt;" in svg
    assert svg.count("&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#x27;") == 2  # label, title
    root = parse(svg)
    assert HOSTILE in boxes(root)
    title = root.find(f"{NS}title")
    assert title is not None
    assert title.text == f"graph {HOSTILE}"


def test_the_svg_is_a_labelled_image_styled_only_by_classes() -> None:
    """The <svg> is an image titled via aria-labelledby, sized, and styled by known classes only."""
    root = parse(graph_svg(drawn(looping()), title="the agent"))
    assert root.tag == f"{NS}svg"
    assert root.get("role") == "img"
    assert root.get("class") == "graph"
    assert len(NUMBER.findall(root.get("viewBox", ""))) == 4
    assert float(root.get("width", "0")) > 0
    assert float(root.get("height", "0")) > 0
    titles = [el for el in root.iter(f"{NS}title") if el.get("id") == root.get("aria-labelledby")]
    assert [title.text for title in titles] == ["the agent"]
    elements = list(root.iter())
    assert not [el for el in elements if "style" in el.attrib or el.tag == f"{NS}style"]
    used = {name for el in elements for name in el.get("class", "").split()}
    assert used <= CLASSES
    kinds = {group.findtext(f"{NS}text"): group.get("class") for group in root.iter(f"{NS}g")}
    assert [kinds[START], kinds["agent"], kinds[END]] == [
        "node node-start",
        "node",
        "node node-end",
    ]


@pytest.mark.parametrize(
    "drawing",
    [{}, {"nodes": [], "edges": []}, {"nodes": [], "edges": [{"source": "a", "target": "b"}]}],
)
def test_a_drawing_without_nodes_is_a_small_svg_saying_so(drawing: dict[str, Any]) -> None:
    """No nodes gives a small valid SVG whose only text besides the title is "no nodes"."""
    root = parse(graph_svg(drawing, title="empty"))
    assert [t.text for t in root.iter(f"{NS}text")] == ["no nodes"]
    assert float(root.get("width", "inf")) <= 300
    assert float(root.get("height", "inf")) <= 100
    assert edge_paths(root) == []


def test_odd_input_is_drawn_without_failing() -> None:
    """Numeric ids become text, repeats are drawn once, edges to unknown nodes are left out."""
    drawing = {
        "nodes": [{"id": 0, "type": "runnable", "data": "x"}, {"id": END}, {"id": END}, {}],
        "edges": [{"source": 0, "target": END}, {"source": 0, "target": "ghost"}, "junk"],
    }
    root = parse(graph_svg(drawing, title="odd"))
    assert set(boxes(root)) == {"0", END}
    assert len(edge_paths(root)) == 1


def test_the_same_drawing_gives_the_same_svg() -> None:
    """Equal inputs give byte-equal SVG, and graph_svg leaves its input unchanged."""
    drawing = drawn(looping())
    before = copy.deepcopy(drawing)
    first = graph_svg(drawing, title="loop")
    assert graph_svg(copy.deepcopy(drawing), title="loop") == first
    assert drawn(looping()) == drawing == before
