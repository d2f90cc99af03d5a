"""A graph's picture for its console page: the SVG drawing and LangGraph's Mermaid text."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, cast

from markupsafe import Markup

from lg_deploy.assistants.graph_views import drawing
from lg_deploy.console.drawing import graph_svg
from lg_deploy.console.render import svg_markup
from lg_deploy.graphs import GraphRegistry

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GraphDrawing:
    """What can be shown of a graph: its SVG and Mermaid text, or why there is none."""

    svg: Markup | None = None
    mermaid: str | None = None
    missing: str | None = None


async def graph_drawing(graphs: GraphRegistry, graph_id: str) -> GraphDrawing:
    """The graph drawn, when this process loads it; else the reason it cannot be drawn here."""
    if graph_id not in graphs.names():
        return GraphDrawing(
            missing="this process does not load this graph: open the console "
            "of a process that serves it to see its drawing"
        )
    try:
        graph = await graphs.get(graph_id)
        shape = await drawing(graph, False)
        mermaid = (await cast(Any, graph).aget_graph()).draw_mermaid()
    except Exception as error:  # a graph that cannot be drawn still has a page
        logger.info("graph %s cannot be drawn: %s", graph_id, type(error).__name__)
        return GraphDrawing(missing=f"this graph cannot be drawn ({type(error).__name__})")
    return GraphDrawing(
        svg=svg_markup(graph_svg(shape, title=f"graph {graph_id}")), mermaid=str(mermaid)
    )
