"""The LangGraph StateGraph: one loop for every turn, in LangGraph's canonical tool-calling shape.

::

    START -> plan --tools_condition--> tools (ToolNode) -> plan -> ... -> respond -> END
                  \\-- no tool call ------------------------------------/

``plan`` (agent/nodes.py) takes in the last tool step's results and asks the planner
(agent/planner.py: the embedded planner LoRA by default, the rules as its fallback or on request)
for the next call(s); the ToolNode runs them, validated against the registry's schemas
(agent/registry.py), a failure coming back as an error message the planner reads. An upload, an SDSS
identifier and a text question all take this one path: the spectrum analysis is the composite tool
``analyze_spectrum``. ``respond`` words the reply from the calls and passes the claim check.

The compiled graph is checkpointed per ``thread_id`` (SqliteSaver), so ``messages``, the current
spectrum, prediction and z survive a restart of the process.
"""
from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from speclm.agent.nodes import AgentNodes
from speclm.agent.state import AgentState


def _tool_error_text(exc: Exception) -> str:
    """What the planner reads back when a call fails validation or the tool raises (one line): a
    speclm error's own words, else the exception's type and words."""
    from speclm.tools.errors import SpeclmError

    msg = " ".join(str(exc).split())[:300]
    return msg if isinstance(exc, SpeclmError) else f"{type(exc).__name__}: {msg}"


def build_graph(nodes: AgentNodes, checkpointer=None):
    """Compile the agent's StateGraph over ``nodes`` with an optional checkpointer."""
    g = StateGraph(AgentState)
    g.add_node("plan", nodes.plan)
    g.add_node("tools", ToolNode(list(nodes.tools.values()), handle_tool_errors=_tool_error_text))
    g.add_node("respond", nodes.respond)
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", tools_condition, {"tools": "tools", END: "respond"})
    g.add_edge("tools", "plan")
    g.add_edge("respond", END)
    return g.compile(checkpointer=checkpointer)
