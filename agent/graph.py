"""The LangGraph StateGraph: how a turn flows through the nodes.

::

    START -> route -+-> spectrum:  ingest -> predict -> check -> cosmology -> measure -> respond
                    +-> lookup:    lookup -> ingest -> predict -> check -> cosmology -> measure -> respond
                    +-> check:     check -> cosmology -> respond
                    +-> cosmology: cosmology -> respond
                    +-> chat:      (cosmology -> measure, when it is a follow-up about the stored z) -> respond
                    +-> clarify:   respond
                    +-> plan (AgentConfig.planner = "model", text turns):
                               plan <-> tools (ToolNode) ... -> planned -> respond
                               (embedded planner, proposal unparsable/invalid: plan -> the rules' route)
    any node that sets ``error`` jumps straight to respond (which replies with the problem).

The compiled graph is checkpointed per ``thread_id`` (SqliteSaver), so ``messages``, the current
spectrum, prediction and z survive a restart of the process.
"""
from __future__ import annotations

from langgraph.graph import END, START, StateGraph
from langgraph.prebuilt import ToolNode

from speclm.agent.nodes import AgentNodes
from speclm.agent.state import AgentState


def _after(next_node: str):
    """Edge function: continue to next_node unless the node just failed."""

    def edge(state: AgentState) -> str:
        return "respond" if state.get("error") else next_node

    edge.__name__ = f"to_{next_node}"
    return edge


def _from_route(state: AgentState) -> str:
    route = state.get("route")
    if route == "spectrum":
        return "ingest"
    if route in ("lookup", "check", "cosmology", "plan"):
        return route
    if route == "chat" and state.get("grounded"):
        return "cosmology"
    return "respond"


def _after_plan(state: AgentState) -> str:
    """The loop's edge: run the proposed tool calls, or leave the loop (answer / step limit / error)."""
    if state.get("error"):
        return "respond"
    if state.get("plan_fallback"):  # the embedded planner's proposal was not run: the rules' route
        return _from_route(state)
    msgs = state.get("messages") or []
    return "tools" if msgs and getattr(msgs[-1], "tool_calls", None) else "planned"


def _tool_error_text(exc: Exception) -> str:
    """What the planner reads back when a call fails validation or the tool raises (one line)."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def _after_cosmology(state: AgentState) -> str:
    if state.get("error"):
        return "respond"
    return "measure" if state.get("route") in ("spectrum", "lookup", "chat") else "respond"


def build_graph(nodes: AgentNodes, checkpointer=None):
    """Compile the agent's StateGraph over ``nodes`` with an optional checkpointer."""
    g = StateGraph(AgentState)
    g.add_node("route", nodes.route)
    g.add_node("lookup", nodes.lookup)
    g.add_node("ingest", nodes.ingest)
    g.add_node("predict", nodes.predict)
    g.add_node("check", nodes.check)
    g.add_node("cosmology", nodes.cosmology)
    g.add_node("measure", nodes.measure)
    g.add_node("respond", nodes.respond)
    g.add_node("plan", nodes.plan)
    g.add_node("tools", ToolNode(list(nodes.tools.values()), handle_tool_errors=_tool_error_text))
    g.add_node("planned", nodes.planned)

    g.add_edge(START, "route")
    g.add_conditional_edges("route", _from_route, ["ingest", "lookup", "check", "cosmology", "plan", "respond"])
    g.add_conditional_edges("plan", _after_plan, ["tools", "planned", "respond", "ingest", "lookup", "check",
                                                  "cosmology"])
    g.add_edge("tools", "plan")
    g.add_edge("planned", "respond")
    g.add_conditional_edges("lookup", _after("ingest"), ["ingest", "respond"])
    g.add_conditional_edges("ingest", _after("predict"), ["predict", "respond"])
    g.add_conditional_edges("predict", _after("check"), ["check", "respond"])
    g.add_conditional_edges("check", _after("cosmology"), ["cosmology", "respond"])
    g.add_conditional_edges("cosmology", _after_cosmology, ["measure", "respond"])
    g.add_edge("measure", "respond")
    g.add_edge("respond", END)
    return g.compile(checkpointer=checkpointer)
