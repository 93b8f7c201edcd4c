"""A loopback fake of OpenAI's transcription endpoint (``POST /v1/audio/transcriptions``), driven by a ``FakeBehaviour``.

It speaks the real wire format, so the official ``openai`` SDK's ``audio.transcriptions.create`` works against it
unpatched (``base_url`` = ``server.url + "/v1"``): a multipart/form-data upload (fields ``model``, ``language``,
``prompt``, ``response_format``, ``temperature`` and the ``file`` part), a JSON ``{"text": ..., "usage": ...}``
answer (or plain text for ``response_format=text``; ``verbose_json`` for ``whisper-1``), and OpenAI's error bodies
and status codes: 401 for a missing or wrong key (the key masked as OpenAI masks it), 400 for a missing model or
file, a file that is not audio, audio under 0.1 s or an unknown response format, 404 for a model other than
``behaviour.model`` (when set), 413 over the 25 MB limit, 429 with rate-limit headers, 5xx bodies.

The fake understands WAV uploads only (the standard library's ``wave``): it checks that the file is one and
records its format; anything else is answered like a file the API cannot decode. It does not listen: the text
it "heard" is ``text`` (a string, or a function of the parsed :class:`Upload`) when given, else
``behaviour.script``.

Faults (``behaviour.faults``, one per request, see ``fake_vendors.Fault``): ``status`` and ``rate_limit`` answer
with that error before any work; ``stall_before_first`` holds the answer back ``fault.stall`` seconds;
``truncate`` sends the first ``fault.after_chunks`` 8-byte pieces of the JSON body and drops the connection;
``invalid_json`` answers 200 with a body that is not JSON. The others (``stall_mid``, ``no_terminal``,
``in_stream_error``) have no meaning for one JSON answer: they are ignored and recorded as ``"ignored:<kind>"``.
``behaviour.ttft`` is the processing time before every answer.

Each request's record (``behaviour.requests[i]``, key headers removed) has the form fields as ``body`` with
``body["file"]`` summarised (file name, content type, byte count, and for a WAV its rate, channels and
seconds; never the audio) and gains ``"outcome"`` like the other fakes'.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import re
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from .fake_openai import _error, _request_id, _status_error, check_key, fault_response
from .fake_tts import _ignore, _paced, _pieces, _record, _tracked
from .fake_vendors import FakeBehaviour

MAX_UPLOAD_BYTES = 26_214_400
"""OpenAI's limit on the request body of an upload (25 MiB)."""
MIN_AUDIO_SECONDS = 0.1
SUPPORTED_FORMATS = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")
RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")
_TRUNCATE_PIECE = 8


@dataclass
class FormPart:
    """One part of a multipart/form-data body."""

    name: str
    data: bytes = field(repr=False)
    filename: str | None = None
    content_type: str | None = None


@dataclass
class Upload:
    """What a transcription request carried: its text fields and the audio file with the WAV's format."""

    fields: dict[str, str]
    filename: str
    content_type: str | None
    audio: bytes = field(repr=False)
    sample_rate: int = 0
    channels: int = 0
    seconds: float = 0.0


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data."""


_PARAM = re.compile(r';\s*([A-Za-z0-9_*-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def _params(header: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in _PARAM.findall(header):
        value = value.strip()
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out[name.lower()] = value
    return out


def parse_multipart(body: bytes, content_type: str) -> list[FormPart]:
    """The parts of a multipart/form-data ``body`` (RFC 7578), byte-exact; ``MultipartError`` when malformed."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise MultipartError("the content type is not multipart/form-data")
    boundary = _params(content_type).get("boundary", "")
    if not boundary or len(boundary) > 70:
        raise MultipartError("multipart/form-data without a usable boundary")
    sections = (b"\r\n" + body).split(b"\r\n--" + boundary.encode("latin-1"))
    if len(sections) < 2:
        raise MultipartError("the boundary never occurs in the body")
    parts: list[FormPart] = []
    for section in sections[1:]:
        if section.startswith(b"--"):
            return parts  # the close delimiter; what follows is the epilogue
        head, sep, data = section.partition(b"\r\n\r\n")
        if not sep:
            raise MultipartError("a part without a blank line after its headers")
        headers: dict[str, str] = {}
        for line in head.split(b"\r\n")[1:]:  # the first line is the rest of the delimiter line (padding)
            name, colon, value = line.decode("utf-8", "replace").partition(":")
            if not colon:
                raise MultipartError(f"a malformed part header line {line[:40]!r}")
            headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        if not disposition.lower().startswith("form-data"):
            raise MultipartError("a part without Content-Disposition: form-data")
        params = _params(disposition)
        if "name" not in params:
            raise MultipartError("a part without a name")
        parts.append(FormPart(params["name"], data, params.get("filename"), headers.get("content-type")))
    raise MultipartError("the body ends without the closing boundary")


def _wav_format(data: bytes) -> tuple[int, int, float] | None:
    """(rate, channels, seconds) of a WAV file, or None when ``wave`` cannot read it."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wf:
            rate, channels, frames = wf.getframerate(), wf.getnchannels(), wf.getnframes()
    except (wave.Error, EOFError, ValueError):
        return None
    if rate <= 0 or channels <= 0:
        return None
    return rate, channels, frames / rate


def _invalid(message: str, param: str | None = None, code: str | None = None) -> JSONResponse:
    return _error(400, {"message": message, "type": "invalid_request_error", "param": param, "code": code})


def _usage(model: str, seconds: float, text: str) -> dict[str, Any]:
    if model.startswith("whisper"):
        return {"type": "duration", "seconds": math.ceil(seconds)}
    audio_tokens = max(1, round(seconds * 10))
    output = max(1, len(text.split()) * 4 // 3)
    return {"type": "tokens", "input_tokens": audio_tokens,
            "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
            "output_tokens": output, "total_tokens": audio_tokens + output}


def make_openai_stt_app(behaviour: FakeBehaviour, *, text: str | Callable[[Upload], str] | None = None) -> Starlette:
    """The fake OpenAI transcription endpoint for ``behaviour`` (run it with ``FakeServer``)."""

    def heard(upload: Upload) -> str:
        if callable(text):
            return text(upload)
        return behaviour.script if text is None else text

    async def transcriptions(request: Request) -> Response:
        token, refused = check_key(request, behaviour)
        if refused is not None:
            return refused
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
            return _error(413, {"message": f"Maximum content size limit ({MAX_UPLOAD_BYTES}) exceeded ({declared} "
                                "bytes read)", "type": "server_error", "param": None, "code": None})
        body = await request.body()
        try:
            parts = parse_multipart(body, request.headers.get("content-type", ""))
        except MultipartError as exc:
            _record(behaviour, request, {"error": str(exc)})
            return _invalid(f"Could not parse multipart form: {exc}")
        fields = {p.name: p.data.decode("utf-8", "replace") for p in parts if p.filename is None}
        files = [p for p in parts if p.name == "file" and p.filename is not None]
        summary: dict[str, Any] = dict(fields)
        fmt = None
        if files:
            f = files[0]
            fmt = _wav_format(f.data)
            summary["file"] = {"filename": f.filename, "content_type": f.content_type, "bytes": len(f.data)}
            if fmt is not None:
                summary["file"].update(sample_rate=fmt[0], channels=fmt[1], seconds=round(fmt[2], 4))
        record = _record(behaviour, request, summary)
        model = fields.get("model", "").strip()
        if not model:
            return _invalid("you must provide a model parameter", "model")
        if not files:
            return _invalid("1 validation error for Request\nbody -> file\n  field required", "file")
        if behaviour.model and model != behaviour.model:
            return _status_error(404, model)
        response_format = fields.get("response_format", "json") or "json"
        if response_format not in RESPONSE_FORMATS:
            return _invalid(f"Invalid value: '{response_format}'. Supported values are: "
                            f"{', '.join(repr(f) for f in RESPONSE_FORMATS)}.", "response_format", "invalid_value")
        if response_format not in ("json", "text") and not model.startswith("whisper"):
            return _invalid(f"response_format '{response_format}' is not compatible with model '{model}'. Use "
                            "'json' or 'text' instead.", "response_format", "unsupported_value")
        if response_format in ("srt", "vtt"):
            return _invalid(f"This fake does not write {response_format} subtitles.", "response_format")
        if fmt is None:
            supported = ", ".join(repr(s) for s in SUPPORTED_FORMATS)
            return _invalid(f"Invalid file format. Supported formats: [{supported}]", "file", "invalid_value")
        if fmt[2] < MIN_AUDIO_SECONDS:
            return _invalid(f"Audio file is too short. Minimum audio length is {MIN_AUDIO_SECONDS} seconds.",
                            "file", "audio_too_short")

        fault = behaviour.next_fault()
        refused = fault_response(fault, record, token, model)
        if refused is not None:
            return refused
        fault = _ignore(record, fault, ("stall_before_first", "truncate", "invalid_json"))
        if fault is not None and fault.kind == "stall_before_first":
            record["outcome"] = "fault:stall_before_first"
            await asyncio.sleep(fault.stall)
            record["outcome"] = None  # the client waited it out: the answer comes
            fault = None
        if behaviour.ttft:
            await asyncio.sleep(behaviour.ttft)

        upload = Upload(fields, files[0].filename or "", files[0].content_type, files[0].data, *fmt)
        said = heard(upload)
        headers = {"x-request-id": _request_id(), "openai-processing-ms": str(max(1, round(behaviour.ttft * 1000)))}
        if response_format == "text":
            payload: bytes = (said + "\n").encode()
            media_type = "text/plain; charset=utf-8"
        else:
            answer: dict[str, Any] = {"text": said}
            if response_format == "verbose_json":
                answer = {"task": "transcribe", "language": "english", "duration": round(fmt[2], 2), "text": said,
                          "segments": [], "usage": _usage(model, fmt[2], said)}
            else:
                answer["usage"] = _usage(model, fmt[2], said)
            payload = json.dumps(answer).encode()
            media_type = "application/json"
        if fault is not None and fault.kind == "invalid_json":
            record["outcome"] = "fault:invalid_json"
            return Response(b'{"text": "' + said.encode()[:8], media_type="application/json", headers=headers)
        if fault is not None and fault.kind == "truncate":
            # no pacing: the processing time (ttft) has passed already
            stream = _paced(FakeBehaviour(ttft=0.0, chunk_interval=0.0), record, fault,
                            _pieces(payload, _TRUNCATE_PIECE))
            return StreamingResponse(_tracked(app, record, stream), media_type=media_type, headers=headers)
        record["outcome"] = "completed"
        if media_type == "application/json":
            return Response(payload, media_type=media_type, headers=headers)
        return PlainTextResponse(payload.decode(), headers=headers)

    app = Starlette(routes=[Route("/v1/audio/transcriptions", transcriptions, methods=["POST"])])
    app.state.open_streams = 0
    return app
