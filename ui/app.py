"""The Gradio chat: upload a spectrum (or name an SDSS object), get a redshift, ask follow-ups.

Layers: :class:`ChatService` is plain Python (no gradio import) and does all the work of a turn —
validate the upload, call ``Assistant.stream``, turn its events into chat messages, the redshift
panel, the plot and the tool trace. :func:`build_app` only lays out gr.Blocks and wires events to
it, so the behaviour is testable without a browser and the browser test checks only the wiring.

Sessions: each browser tab gets its own ``gr.State`` holding a fresh ``thread_id``, so the
agent's checkpointer keeps conversations apart; the :class:`Assistant` (and with it the one model
runtime) is shared by all sessions, and the runtime's ``lock`` serialises generation, so several
users can chat at once while only one forward pass runs at a time.

Errors: nothing a user does may end the session. A bad file, an unknown SDSS id, an agent
failure or an unexpected exception becomes an assistant chat message (prefixed ⚠) and the
next message works as usual.
"""
from __future__ import annotations

import html
import os
import threading
from collections import OrderedDict
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from speclm.tools.config import Config, setting
from speclm.tools.errors import ConfigError, FileTooLargeError, SpeclmError, SpectrumError

#: extensions offered in the upload box; anything else gets a chat message, not a silent refusal
UPLOAD_EXTENSIONS = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".csv", ".txt", ".dat", ".tsv",
                     ".npy", ".npz")
DEFAULT_QUESTION = "What is the redshift of this spectrum?"
SDSS_QUESTION = "What is the redshift of this object?"
FOLLOW_UP = ("What type of galaxy is expected at the redshift you just predicted? "
             "Which surveys could observe it?")


@dataclass
class ChatConfig(Config):
    """Everything `speclm chat` decides; validated so a bad flag fails before the model loads."""

    host: str = setting("127.0.0.1", "interface to listen on (0.0.0.0 exposes it on the network)")
    port: int = setting(7860, "TCP port (0 = any free port)")
    agent: Any = setting(None, "the assistant's AgentConfig (model, adapter, planner, backend, memory); None = its "
                         "defaults with the conversations in the cache dir. One config for chat, ask, demo and evals")
    max_upload_mb: float = setting(20.0, "largest spectrum file accepted, MiB")
    concurrency: int = setting(4, "how many sessions' events run at once (generation is still serialised)")
    n_simulated_examples: int = setting(3, "simulated example spectra offered (0 = none)")
    examples_dir: str | None = setting(None, "where simulated examples are cached (default: cache dir)")
    share: bool = setting(False, "create a public gradio.live link (needs internet; off by default)")

    def __post_init__(self) -> None:
        if not (0 <= int(self.port) <= 65535):
            raise ConfigError(f"port must be in 0-65535, got {self.port}")
        if not (0 < float(self.max_upload_mb) <= 1024):
            raise ConfigError(f"max_upload_mb must be in (0, 1024], got {self.max_upload_mb}")
        if int(self.concurrency) < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency}")
        if int(self.n_simulated_examples) < 0:
            raise ConfigError("n_simulated_examples must be >= 0")
        from speclm.agent.config import AgentConfig

        if self.agent is None:
            self.agent = AgentConfig(checkpoint_db=default_checkpoint_db())
        elif isinstance(self.agent, dict):
            self.agent = AgentConfig(**self.agent)
        elif not isinstance(self.agent, AgentConfig):
            raise ConfigError(f"agent must be an AgentConfig or a dict of its fields, got {type(self.agent).__name__}")

    @property
    def max_upload_bytes(self) -> int:
        return int(float(self.max_upload_mb) * 1024 * 1024)

    @classmethod
    def help(cls) -> dict[str, str]:
        return cls.field_help()


def default_checkpoint_db() -> str:
    from speclm.finetune.runtime import cache_root

    d = cache_root() / "chat"
    d.mkdir(parents=True, exist_ok=True)
    return str(d / "conversations.sqlite")


def make_assistant(cfg: ChatConfig, runtime=None):
    """The one Assistant all sessions share (loads the model runtime unless one is given)."""
    from speclm.agent.assistant import Assistant

    return Assistant(cfg.agent) if runtime is None else Assistant(cfg.agent, runtime=runtime)


# ------------------------------------------------------------------------------------------------
# Rendering helpers (pure functions of agent results)
# ------------------------------------------------------------------------------------------------

def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if v == v else None


def redshift_html(prediction: dict | None, check: dict | None = None, *, z: float | None = None,
                  z_source: str | None = None, adapter_on: bool | None = None) -> str:
    """The prominent redshift panel.

    Big: the redshift the assistant uses from now on (``z``, from ``z_source``: the model, a
    confident line fit, or a catalog); under it the model's 68% interval. When a line fit moved
    the redshift, the model's own z is shown next to its interval so neither is hidden.
    """
    model_z = _num((prediction or {}).get("z"))
    z = _num(z)
    if z is None:
        z, z_source = model_z, (z_source or ("model" if model_z is not None else None))
    if z is None:
        return ('<div id="speclm-z" class="speclm-z empty">No redshift yet — upload a spectrum, '
                'click an example, or enter an SDSS identifier.</div>')
    src = f' <span class="speclm-z-source">({html.escape(str(z_source))})</span>' if z_source else ""
    parts = [f'<div id="speclm-z" class="speclm-z"><div class="speclm-z-value" data-z="{z:.6f}">'
             f"z = {z:.4f}{src}</div>"]
    lo, hi = _num((prediction or {}).get("z_lo")), _num((prediction or {}).get("z_hi"))
    if lo is not None and hi is not None:
        own = f"model z = {model_z:.4f}, " if model_z is not None and abs(model_z - z) > 5e-5 else ""
        parts.append(f'<div class="speclm-z-interval">{own}68% interval: {lo:.4f} – {hi:.4f}</div>')
    notes = []
    if check:
        zc = _num(check.get("z"))
        n = len(check.get("lines") or [])
        if check.get("confident") and zc is not None:
            notes.append(f"line check: confident, refined z = {zc:.5f} from {n} line{'s' * (n != 1)}")
        else:
            reason = html.escape(str(check.get("reason") or "not enough line evidence"))
            notes.append(f"line check: not confident ({reason})")
    if adapter_on is not None:
        notes.append(f"LoRA adapter {'on' if adapter_on else 'off'} for this answer")
    if notes:
        parts.append('<div class="speclm-z-notes">' + " · ".join(notes) + "</div>")
    parts.append("</div>")
    return "".join(parts)


def error_message(exc: BaseException, *, context: str = "") -> str:
    """One chat line for any failure: our own errors say what is wrong; others name their type."""
    if isinstance(exc, SpeclmError):
        text = str(exc)
    else:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return f"⚠ {context}{text}" if context else f"⚠ {text}"


# ------------------------------------------------------------------------------------------------
# The session logic
# ------------------------------------------------------------------------------------------------

@dataclass
class Update:
    """What one step of a turn changes in the page; ``None`` fields are left as they are."""

    history: list[dict]
    redshift: str | None = None
    figure: Any = None
    trace: list | None = None
    session: dict | None = None


class ChatService:
    """All the behaviour of the chat, independent of gradio (see module docstring)."""

    def __init__(self, assistant, *, max_upload_bytes: int = 20 * 1024 * 1024, examples=()):
        self.assistant = assistant
        self.max_upload_bytes = int(max_upload_bytes)
        self.examples = list(examples)
        #: the latest TurnResult of each thread (bounded): lets tests and logs see the tool numbers
        #: behind what the page shows without scraping it
        self.last_results: OrderedDict[str, Any] = OrderedDict()
        self.turns_done = 0
        self._results_lock = threading.Lock()
        self.max_remembered = 1000

    # -- sessions ---------------------------------------------------------------------------------
    @staticmethod
    def new_session() -> dict:
        """Per-tab memory: a fresh agent thread, and the spectrum the plot shows."""
        return {"thread_id": f"ui-{uuid.uuid4().hex[:12]}", "spectrum_path": None, "spectrum_name": None,
                "prediction": None, "check": None, "turns": 0}

    # -- uploads ----------------------------------------------------------------------------------
    def validate_upload(self, path: str | os.PathLike):
        """Read an uploaded file with our size limit; returns the Spectrum or raises SpectrumError.

        Checks the size before anything else (gradio's own limit is only a backstop, and its
        refusal would not be a chat message) and then the extension, then the content via the one
        reader, so the chat names the same problem `speclm inspect` would.
        """
        from speclm.tools.errors import UnsupportedFormatError
        from speclm.tools.spectrum import read_spectrum

        p = Path(os.fspath(path))
        name = p.name
        if p.is_file() and p.stat().st_size > self.max_upload_bytes:
            raise FileTooLargeError(
                f"{name}: {p.stat().st_size / 2**20:.1f} MiB is over the upload limit of "
                f"{self.max_upload_bytes / 2**20:.0f} MiB")
        if not name.lower().endswith(UPLOAD_EXTENSIONS):
            raise UnsupportedFormatError(
                f"{name}: unsupported file type; upload one of {', '.join(UPLOAD_EXTENSIONS)}")
        try:
            return read_spectrum(p, max_bytes=self.max_upload_bytes)
        except SpectrumError as exc:  # gradio stores uploads under a long temp path: show the name
            raise type(exc)(str(exc).replace(str(p), name)) from None

    # -- one turn ---------------------------------------------------------------------------------
    def respond(self, history: list | None, text: str | None, *, upload: str | None = None,
                sdss_id: str | None = None, session: dict | None = None) -> Iterator[Update]:
        """Run one turn, yielding page updates as it streams. Never raises."""
        session = dict(session or self.new_session())
        history = list(history or [])
        text = (text or "").strip()
        sdss_id = (sdss_id or "").strip() or None
        spec = None
        if upload:
            name = Path(str(upload)).name
            text = text or DEFAULT_QUESTION
            history.append({"role": "user", "content": f"File: {name}\n\n{text}"})
            try:
                spec = self.validate_upload(upload)
            except Exception as exc:  # noqa: BLE001 -- every failure becomes a message
                history.append({"role": "assistant",
                                "content": error_message(exc, context="I could not use that file: ")})
                yield Update(history, session=session)
                return
            spec.meta.setdefault("id", name)
            session.update(spectrum_path=str(upload), spectrum_name=name, prediction=None, check=None)
        elif sdss_id:
            text = text or SDSS_QUESTION
            history.append({"role": "user", "content": f"SDSS object: {sdss_id}\n\n{text}"})
        else:
            if not text:
                return
            history.append({"role": "user", "content": text})

        history.append({"role": "assistant", "content": "…"})
        fig = self._figure(spec, None, None) if spec is not None else None
        yield Update(history, figure=fig, session=session,
                     redshift=redshift_html(None) if spec is not None else None)

        t0 = time.perf_counter()
        streamed: list[str] = []
        trace: list[dict] = []
        result = None
        stream_error: str | None = None
        try:
            for ev in self.assistant.stream(session["thread_id"], text, spectrum_path=upload,
                                            sdss_id=sdss_id):
                kind = ev.get("type")
                if kind == "token":
                    streamed.append(str(ev.get("text") or ev.get("token") or ev.get("content") or ""))
                    history[-1] = {"role": "assistant", "content": "".join(streamed)}
                    yield Update(history)
                elif kind == "tool":
                    trace.append({k: v for k, v in ev.items() if k != "type"})
                    if not streamed:
                        history[-1] = {"role": "assistant",
                                       "content": f"… running {ev.get('name', 'a tool')}"}
                    yield Update(history, trace=trace)
                elif kind == "plan":  # a planner step: the tool calls the planner chose, and who chose them
                    trace.append({"name": f"planner step {ev.get('step')} ({ev.get('planned_by') or 'planner'})",
                                  "input": {"tool_calls": ev.get("tool_calls")},
                                  "output": {"fallback to the rules": ev["fallback"]} if ev.get("fallback") else None})
                    yield Update(history, trace=trace)
                elif kind == "prediction":
                    pred = ev.get("prediction") or {k: v for k, v in ev.items() if k != "type"}
                    session["prediction"] = pred
                    yield Update(history, redshift=redshift_html(pred),
                                 figure=self._figure_for_session(session, pred, None), session=session)
                elif kind == "error":
                    stream_error = str(ev.get("message") or ev.get("error") or "unknown error")
                elif kind == "done":
                    result = ev.get("result")
        except Exception as exc:  # noqa: BLE001 -- the session must go on
            if os.environ.get("SPECLM_DEBUG"):
                traceback.print_exc()
            history[-1] = {"role": "assistant", "content": error_message(exc)}
            yield Update(history, session=session)
            return

        session["turns"] = int(session.get("turns", 0)) + 1
        self._remember(session["thread_id"], result)
        if result is None:
            msg = "".join(streamed).strip() or f"⚠ {stream_error or 'the assistant returned no answer'}"
            history[-1] = {"role": "assistant", "content": msg}
            yield Update(history, trace=trace, session=session)
            return

        reply = (result.reply or "").strip()
        err = result.error or stream_error
        if err and (not reply or result.route == "error"):
            reply = (reply + "\n\n" if reply else "") + f"⚠ {err}"
        history[-1] = {"role": "assistant", "content": reply or "⚠ the assistant returned no answer"}
        redshift = fig = None
        if result.prediction:
            session["prediction"] = result.prediction
        if result.check:
            session["check"] = result.check
        if getattr(result, "z", None) is not None:
            session["stated"] = {"z": result.z, "z_source": getattr(result, "z_source", None),
                                 "spectype": getattr(result, "spectype", None)}
        if result.prediction or result.check:
            redshift = redshift_html(session["prediction"], session["check"], z=getattr(result, "z", None),
                                     z_source=getattr(result, "z_source", None), adapter_on=result.adapter_on)
            fig = self._figure_for_session(session, session["prediction"], session["check"])
        if result.spectrum_summary and result.spectrum_summary.get("source") and not upload:
            # a lookup downloaded a spectrum: plot that one from now on
            src = result.spectrum_summary["source"]
            if Path(str(src)).is_file():
                session.update(spectrum_path=str(src), spectrum_name=Path(str(src)).name)
                fig = self._figure_for_session(session, session["prediction"], session["check"])
        full_trace = list(result.tool_trace or trace)
        full_trace.append({"name": "turn", "route": result.route, "thread_id": session["thread_id"],
                           "planner": result.planner, "plan": result.plan,
                           "adapter_on": result.adapter_on, "seconds": round(time.perf_counter() - t0, 3)})
        yield Update(history, redshift=redshift, figure=fig, trace=full_trace, session=session)

    def _remember(self, thread_id: str, result) -> None:
        with self._results_lock:
            self.turns_done += 1
            if result is not None:
                self.last_results[thread_id] = result
                self.last_results.move_to_end(thread_id)
                while len(self.last_results) > self.max_remembered:
                    self.last_results.popitem(last=False)

    # -- plotting -----------------------------------------------------------------------------------
    def _figure(self, spec, prediction, check, stated=None):
        from speclm.ui.plot import figure_from_result

        return figure_from_result(spec, prediction, check, stated)[0]

    def _figure_for_session(self, session: dict, prediction, check):
        """Re-read the session's spectrum (small, and keeps Spectrum objects out of gr.State)."""
        path = session.get("spectrum_path")
        if not path:
            return None
        try:
            from speclm.tools.spectrum import read_spectrum

            spec = read_spectrum(path, max_bytes=None)
        except SpectrumError:
            return None
        spec.meta.setdefault("id", session.get("spectrum_name"))
        return self._figure(spec, prediction, check, session.get("stated"))


# ------------------------------------------------------------------------------------------------
# Gradio layout
# ------------------------------------------------------------------------------------------------

CSS = """
.speclm-z { padding: 10px 14px; border-radius: 8px; background: var(--block-background-fill); }
.speclm-z-value { font-size: 2.0em; font-weight: 700; }
.speclm-z-interval { font-size: 1.1em; }
.speclm-z-notes { font-size: 0.85em; opacity: 0.8; margin-top: 4px; }
.speclm-z.empty { opacity: 0.7; }
"""


def build_app(service: ChatService, *, title: str = "speclm — galaxy spectra chat", concurrency: int = 4):
    """Lay out the gr.Blocks and wire its events to ``service``; returns the (unlaunched) Blocks."""
    import gradio as gr

    def outputs_of(u: Update):
        return (u.history,
                gr.skip() if u.redshift is None else u.redshift,
                gr.skip() if u.figure is None else u.figure,
                gr.skip() if u.trace is None else u.trace,
                gr.skip() if u.session is None else u.session)

    # uploads live in gradio's cache; threads refer to them by path, so keep them a week
    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(86400, 7 * 86400)) as demo:
        session = gr.State(None)
        gr.Markdown("## speclm — ask a galaxy spectrum for its redshift\n"
                    "Upload a spectrum (FITS, CSV/TXT, NPY, NPZ), click an example or enter an SDSS "
                    "identifier; then ask follow-up questions about the galaxy.")
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Chat", height=460, elem_id="speclm-chat",
                                     feedback_options=None, buttons=["copy"])
                with gr.Row():
                    msg = gr.Textbox(placeholder="Ask about the spectrum, its redshift, distance, lines…",
                                     show_label=False, scale=5, elem_id="speclm-msg", submit_btn=True)
            with gr.Column(scale=2):
                redshift = gr.HTML(redshift_html(None), elem_id="speclm-redshift")
                upload = gr.File(label="Spectrum file (FITS, CSV, TXT, NPY, NPZ)", file_count="single",
                                 type="filepath", elem_id="speclm-upload", height=120)
                with gr.Row():
                    sdss = gr.Textbox(label="SDSS identifier", scale=3, elem_id="speclm-sdss",
                                      placeholder="plate-mjd-fiber (266-51630-1), specobjid, or spec-….fits")
                    lookup = gr.Button("Look up", scale=1, elem_id="speclm-lookup")
                if service.examples:
                    gr.Markdown("**Examples** (one click):")
                    example_buttons = [
                        gr.Button(ex.label, size="sm", elem_id=f"speclm-example-{i}",
                                  variant="secondary")
                        for i, ex in enumerate(service.examples)]
                else:
                    example_buttons = []
        plot = gr.Plot(label="Spectrum (lines marked at the predicted z)", elem_id="speclm-plot",
                       format="png", show_label=False)
        with gr.Accordion("Tool trace", open=False, elem_id="speclm-trace-accordion"):
            trace = gr.JSON(label="tools called this turn", elem_id="speclm-trace")

        outs = [chatbot, redshift, plot, trace, session]

        def on_message(history, text, state):
            for u in service.respond(history, text, session=state):
                yield outputs_of(u)

        def on_upload(path, history, text, state):
            for u in service.respond(history, text, upload=path, session=state):
                yield outputs_of(u)

        def on_lookup(ident, history, text, state):
            for u in service.respond(history, text, sdss_id=ident, session=state):
                yield outputs_of(u)

        def clear():
            return ""

        kw = dict(concurrency_limit=concurrency, concurrency_id="speclm-turn")
        pending = gr.State("")  # the message being answered: the textbox clears at once
        msg.submit(lambda t: ("", t), [msg], [msg, pending], queue=False).then(
            on_message, [chatbot, pending, session], outs, **kw)
        upload.upload(on_upload, [upload, chatbot, msg, session], outs, **kw).then(
            lambda: (None, ""), None, [upload, msg])
        lookup.click(on_lookup, [sdss, chatbot, msg, session], outs, **kw).then(clear, None, sdss)
        sdss.submit(on_lookup, [sdss, chatbot, msg, session], outs, **kw).then(clear, None, sdss)
        for btn, ex in zip(example_buttons, service.examples):
            def on_example(history, state, _path=ex.path):
                for u in service.respond(history, DEFAULT_QUESTION, upload=_path, session=state):
                    yield outputs_of(u)

            btn.click(on_example, [chatbot, session], outs, **kw)
    return demo


@dataclass
class Served:
    """A running chat: the gradio Blocks (``demo.close()`` stops it), its URL and its service."""

    demo: Any
    url: str
    service: ChatService


def launch(cfg: ChatConfig, *, assistant=None, examples=None, block: bool = True) -> Served:
    """Build the service and the page, and serve it on cfg.host:cfg.port (offline: no share,
    no analytics). With block=False the server runs in a background thread and this returns at once."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if examples is None:
        from speclm.ui.examples import all_examples

        examples = all_examples(cfg.examples_dir, cfg.n_simulated_examples)
    if assistant is None:
        assistant = make_assistant(cfg)
    service = ChatService(assistant, max_upload_bytes=cfg.max_upload_bytes, examples=examples)
    demo = build_app(service, concurrency=cfg.concurrency)
    demo.queue(default_concurrency_limit=cfg.concurrency)
    # gradio's own limit is a backstop at twice ours: below it, an oversized file still reaches
    # validate_upload and gets a chat message instead of a toast
    _, url, _ = demo.launch(
        server_name=cfg.host, server_port=int(cfg.port) or None, share=bool(cfg.share),
        max_file_size=2 * cfg.max_upload_bytes, prevent_thread_lock=not block, quiet=not block,
        inbrowser=False, show_error=True, css=CSS, footer_links=[], ssr_mode=False,
        enable_monitoring=False, mcp_server=False)
    return Served(demo, url, service)
