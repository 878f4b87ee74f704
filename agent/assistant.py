"""The Assistant: one object the UI, the demo and the evals talk to.

``Assistant(cfg).turn(thread_id, text, spectrum_path=None, sdss_id=None) -> TurnResult`` runs one
turn through the LangGraph graph; ``stream(...)`` yields the same turn as events (route, tool,
prediction, token, error, done). Threads live in a SQLite checkpointer, so a new Assistant on the
same database continues a conversation. One model serves both modalities: with
``adapter_mode="toggle"`` (ours) the LoRA adapter is on only for the spectrum -> redshift step;
``"always"`` keeps it on for text too, as in the paper.
"""
from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

from speclm.agent.config import AgentConfig
from speclm.agent.state import TurnResult, jsonable, turn_input
from speclm.tools.errors import SpeclmError

__all__ = ["AgentConfig", "Assistant", "TurnResult"]


def _open_checkpointer(db: str):
    from langgraph.checkpoint.sqlite import SqliteSaver

    if db != ":memory:":
        p = Path(db).expanduser()
        p.parent.mkdir(parents=True, exist_ok=True)
        db = str(p)
    conn = sqlite3.connect(db, check_same_thread=False)
    saver = SqliteSaver(conn)
    saver.setup()
    return saver, conn


class Assistant:
    """The speclm agent. ``runtime=`` shares an already-loaded ModelRuntime (UI sessions, evals)."""

    def __init__(self, cfg: AgentConfig | None = None, *, runtime=None, backend=None):
        from speclm.agent.graph import build_graph
        from speclm.agent.nodes import AgentNodes, _emit
        from speclm.agent.planner import make_planner
        from speclm.agent.registry import ToolContext, build_tools

        self.cfg = cfg = cfg or AgentConfig()
        self.backend = backend or self._make_backend(cfg, runtime)
        sdss = cfg.sdss
        if isinstance(sdss, dict):
            from speclm.tools.sdss import SDSSConfig

            sdss = SDSSConfig(**sdss)
        self.tools = build_tools(ToolContext(predict=self.backend.predict, sdss_cfg=sdss, cosmology=cfg.cosmology,
                                             emit=_emit))
        self.nodes = AgentNodes(self.backend, self.tools, adapter_mode=cfg.adapter_mode,
                                max_new_tokens=cfg.max_new_tokens, cosmology=cfg.cosmology,
                                narrate=cfg.narrator == "model" or (cfg.narrator == "auto" and cfg.backend == "openai"),
                                planner=make_planner(cfg, self.backend), plan_max_steps=cfg.plan_max_steps)
        self.checkpointer, self._conn = _open_checkpointer(cfg.checkpoint_db)
        self.graph = build_graph(self.nodes, self.checkpointer)
        self._lock = threading.Lock()  # one turn per Assistant at a time (the model is shared anyway)
        if cfg.eager and cfg.backend == "local":
            try:
                self.backend.runtime
            except SpeclmError:
                pass  # reported on the first turn that needs the model

    @staticmethod
    def _make_backend(cfg: AgentConfig, runtime):
        from speclm.agent.llm import LocalBackend, OpenAIBackend

        if cfg.backend == "openai":
            name = cfg.openai_adapter_model
            if name is None and cfg.adapter:
                name = "smollm2-135m-redshift-sim" if cfg.adapter in ("bundled", "default") else Path(cfg.adapter).name
            return OpenAIBackend(cfg.openai_base_url, cfg.openai_model, name, adapter=cfg.adapter,
                                 api_key_env=cfg.openai_api_key_env)
        return LocalBackend(cfg.base, cfg.adapter, runtime=runtime, device=cfg.device)

    @property
    def runtime(self):
        """The local ModelRuntime (loads it); None for the OpenAI backend."""
        return getattr(self.backend, "runtime", None)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- turns -------------------------------------------------------------------------------------
    @staticmethod
    def new_thread_id() -> str:
        return uuid.uuid4().hex[:12]

    def _config(self, thread_id: str) -> dict:
        return {"configurable": {"thread_id": str(thread_id)}}

    def stream(self, thread_id: str, text: str = "", spectrum_path=None, sdss_id=None) -> Iterator[dict]:
        """Run one turn, yielding events; the last one is ``{"type": "done", "result": TurnResult}``."""
        t0 = time.perf_counter()
        inp = turn_input(text, None if spectrum_path is None else str(spectrum_path),
                         None if sdss_id is None else str(sdss_id))
        with self._lock:
            try:
                for ev in self.graph.stream(inp, self._config(thread_id), stream_mode="custom"):
                    yield ev
                result = self._result(thread_id)
            except Exception as exc:  # the graph itself failed: still answer, keep the thread usable
                msg = f"{type(exc).__name__}: {exc}" if not isinstance(exc, SpeclmError) else str(exc)
                yield {"type": "error", "message": msg}
                reply = f"Something went wrong on my side ({msg}). The conversation continues."
                self._append_reply(thread_id, reply)
                result = TurnResult(reply=reply, route="error", error=msg)
        result.seconds = round(time.perf_counter() - t0, 3)
        result.thread_id = str(thread_id)
        yield {"type": "done", "result": result}

    def turn(self, thread_id: str, text: str = "", spectrum_path=None, sdss_id=None) -> TurnResult:
        """Run one turn and return its result (the same as the ``done`` event of :meth:`stream`)."""
        result = None
        for ev in self.stream(thread_id, text, spectrum_path=spectrum_path, sdss_id=sdss_id):
            if ev["type"] == "done":
                result = ev["result"]
        return result

    def _append_reply(self, thread_id: str, reply: str) -> None:
        from langchain_core.messages import AIMessage

        try:
            self.graph.update_state(self._config(thread_id), {"messages": [AIMessage(content=reply)]},
                                    as_node="respond")
        except Exception:
            pass

    def _result(self, thread_id: str) -> TurnResult:
        st = self.graph.get_state(self._config(thread_id)).values
        produced = set(st.get("produced") or [])
        calls = list(st.get("llm_calls") or [])
        route = st.get("route") or "chat"
        return TurnResult(
            reply=st.get("reply", ""), route=route,
            prediction=st.get("prediction") if "prediction" in produced else None,
            check=st.get("check") if "check" in produced else None,
            search=st.get("search") if "search" in produced else None,
            measure=st.get("measure") if "measure" in produced or st.get("answered") else None,
            surveys=st.get("surveys") if "surveys" in produced else None,
            grounding=st.get("grounding"), answered=list(st.get("answered") or []),
            planner=st.get("planner_used") or "",
            plan=[{k: c.get(k) for k in ("name", "args", "planned_by", "error")} for c in st.get("calls") or []],
            cosmology=(st.get("cosmology_at") or st.get("cosmology")) if "cosmology" in produced or "cosmology_at" in produced
            or st.get("answered") else None,
            spectrum_summary=(st.get("spectrum") or {}).get("summary") if "spectrum" in produced else None,
            tool_trace=list(st.get("tool_trace") or []), error=st.get("error"),
            adapter_on=any(c.get("adapter_on") for c in calls),
            lookup=st.get("lookup") if "lookup" in produced else None,
            z=st.get("z"), z_source=st.get("z_source"), spectype=st.get("spectype"),
            attempted_route=st.get("attempted_route") or route,
            route_reason=st.get("route_reason", ""), llm_calls=calls,
        )

    # -- thread inspection -----------------------------------------------------------------------------
    def history(self, thread_id: str) -> list[dict]:
        """The thread's messages as [{"role", "content"}] (user / assistant)."""
        st = self.graph.get_state(self._config(thread_id)).values
        out = []
        for m in st.get("messages") or []:
            if m.type == "tool" or getattr(m, "name", None) == "planner":
                continue  # the planner's tool traffic is in the thread, not in the conversation
            role = {"human": "user", "ai": "assistant", "system": "system"}.get(m.type, m.type)
            out.append({"role": role, "content": str(m.content)})
        return out

    def state(self, thread_id: str) -> dict:
        """The thread's current object: z (and where it came from), spectrum, prediction, check, ..."""
        st = self.graph.get_state(self._config(thread_id)).values
        spec = st.get("spectrum") or {}
        pred = st.get("prediction") or {}
        return jsonable({
            "z": st.get("z"), "z_source": st.get("z_source"), "spectype": st.get("spectype"),
            "search": st.get("search"),
            "z_interval": [pred.get("z_lo"), pred.get("z_hi")] if pred else None,
            "spectrum_path": spec.get("path"), "spectrum_name": spec.get("name"),
            "spectrum_summary": spec.get("summary"),
            "prediction": st.get("prediction"), "check": st.get("check"), "cosmology": st.get("cosmology"),
            "lookup": st.get("lookup"), "n_messages": len(self.history(thread_id)),
            "last_route": st.get("route"), "backend": self.backend.describe(),
            "adapter_mode": self.cfg.adapter_mode,
        })

