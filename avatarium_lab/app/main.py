"""The Panel demo page (``panel serve avatarium_lab/app``): type a message, the avatar answers aloud with lip sync.

The configuration comes from ``$AVATARIUM_CONFIG`` (a YAML path) or the repository's default one. The model
and voice are loaded once per server process and shared; every browser session has its own conversation.
"""

from __future__ import annotations

import html
import os

import panel as pn

from avatarium_lab.config import load_config
from avatarium_lab.errors import AvatariumError
from avatarium_lab.events import Error, Sentence, TextDelta, TurnEnded, latency_breakdown
from avatarium_lab.pipeline import Conversation, Pipeline
from avatarium_lab.secrets import install_log_redaction
from avatarium_lab.widgets.panel_view import AvatarPane

pn.extension(notifications=False)
install_log_redaction()

_CSS = """
.avatarium-title h1 { margin: 0; font: 600 22px system-ui, sans-serif; color: #1f2937; }
.avatarium-sub { color: #6b7280; font: 14px system-ui, sans-serif; }
.avatarium-reply { font: 16px/1.5 system-ui, sans-serif; color: #111827; min-height: 3em; }
.avatarium-history { font: 14px/1.45 system-ui, sans-serif; color: #374151; }
"""
pn.config.raw_css.append(_CSS)


def _pipeline() -> Pipeline:
    """One pipeline per server process (the model is loaded once)."""
    key = "avatarium_pipeline"
    if key not in pn.state.cache:
        config = load_config(os.environ.get("AVATARIUM_CONFIG") or None)
        pipeline = Pipeline(config)
        pipeline.warm()
        pn.state.cache[key] = pipeline
    return pn.state.cache[key]


def _latency_html(events: list) -> str:
    rows = []
    for key, value in latency_breakdown(events).as_ms().items():
        label = key.removesuffix("_ms").replace("_", " ")
        rows.append(f"<tr><td>{html.escape(label)}</td><td style='text-align:right'>"
                    f"{'–' if value is None else f'{value:.0f} ms'}</td></tr>")
    return ("<table class='avatarium-latency' style='font:13px system-ui;border-collapse:collapse'>"
            + "".join(rows) + "</table>")


def build_page() -> pn.viewable.Viewable:
    pipeline = _pipeline()
    persona = pipeline.persona
    conversation = Conversation()

    avatar = AvatarPane(avatar=pipeline.config.avatar, canvas_width=460, canvas_height=460,
                        css_classes=["avatarium-avatar"])
    message = pn.widgets.TextInput(placeholder=f"Say something to {persona.name}…", width=360,
                                   css_classes=["avatarium-input"])
    send = pn.widgets.Button(name="Send", button_type="primary", width=90, css_classes=["avatarium-send"])
    reply = pn.pane.HTML("", css_classes=["avatarium-reply"], width=460)
    history = pn.pane.HTML("", css_classes=["avatarium-history"], width=460)
    latency = pn.pane.HTML("<i>latency appears after the first turn</i>", css_classes=["avatarium-latency-pane"])
    status = pn.pane.HTML("", css_classes=["avatarium-status"])
    transcript: list[tuple[str, str]] = []

    async def on_send(_event: object = None) -> None:
        text = message.value_input or message.value
        if not text or send.disabled:
            return
        try:
            pipeline.validate_message(text)
        except AvatariumError as exc:
            status.object = f"<span style='color:#b91c1c'>{html.escape(exc.message)}</span>"
            return
        message.value = ""
        message.value_input = ""
        send.disabled = True
        status.object = "<span style='color:#6b7280'>thinking…</span>"
        reply.object = ""
        shown = ""
        events = []
        try:
            async for ev in pipeline.turn(text, conversation=conversation):
                events.append(ev)
                avatar.send_event(ev)
                if isinstance(ev, TextDelta):
                    shown += ev.text
                    reply.object = f"<div class='avatarium-reply-text'>{html.escape(shown.strip())}</div>"
                elif isinstance(ev, Sentence) and ev.index == 0:
                    status.object = "<span style='color:#059669'>speaking</span>"
                elif isinstance(ev, Error):
                    status.object = f"<span style='color:#b91c1c'>{html.escape(ev.message)}</span>"
                elif isinstance(ev, TurnEnded) and ev.reason == "complete":
                    status.object = ""
        except AvatariumError as exc:
            status.object = f"<span style='color:#b91c1c'>{html.escape(exc.message)}</span>"
        finally:
            send.disabled = False
        if events:
            latency.object = _latency_html(events)
            transcript.append((text, shown.strip()))
            history.object = "<div class='avatarium-history-text'>" + "".join(
                f"<p><b>You:</b> {html.escape(u)}<br><b>{html.escape(persona.name)}:</b> {html.escape(a)}</p>"
                for u, a in transcript[-6:]
            ) + "</div>"

    send.on_click(on_send)
    message.param.watch(lambda e: pn.state.execute(on_send), "enter_pressed")

    header = pn.Column(
        pn.pane.HTML(f"<h1>avatarium-lab · {html.escape(persona.name)}</h1>", css_classes=["avatarium-title"]),
        pn.pane.HTML(f"<div class='avatarium-sub'>{html.escape(persona.description)} "
                     f"— config <code>{html.escape(pipeline.config.name)}</code>, "
                     f"model <code>{html.escape(pipeline.provider.model)}</code>, "
                     f"voice <code>{html.escape(pipeline.voice.id)}</code></div>"),
    )
    left = pn.Column(avatar, pn.Row(message, send), status, reply)
    right = pn.Column(pn.pane.HTML("<b>Latency of the last turn</b>"), latency,
                      pn.pane.HTML("<b>Conversation</b>"), history, width=360)
    return pn.Column(header, pn.Row(left, pn.Spacer(width=24), right), margin=(12, 24))


build_page().servable(title="avatarium-lab")
