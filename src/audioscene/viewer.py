"""`audioscene view`: a local web page to try a trained model on your own recordings.

Drop or pick an audio file: the page plays it and shows the log-mel spectrogram, the top tags,
the activation curves of the top classes over time and the detected events as coloured bars, with
a cursor that follows playback. Everything is served from this package (no CDN; works offline).
The server listens on 127.0.0.1 unless told otherwise.

API (JSON):
- `GET /api/info` → labels, frame hop, window, upload limit.
- `POST /api/analyze` with the file's bytes as the body (header `X-Filename`), or as the first
  file of a `multipart/form-data` form (what `curl -F file=@clip.wav` and an HTML form send) →
  tags, curves, events and the spectrogram as a PNG data URL; a non-audio or too large upload gives
  a 4xx with `{"error": message}`, never a crash; a client that hangs up mid-upload costs one log line.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import torch

from . import audio
from .errors import UploadError, check_number
from .infer import Tagger, events_from_analysis
from .sed import Tuning

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "resources" / "viewer"
SPECTROGRAM_COLUMNS = 2000  # long files are max-pooled in time down to this many columns


@dataclass(frozen=True)
class ViewerConfig:
    top_k: int = 5
    curves: int = 3  # activation curves drawn (top classes by peak activation)
    thresholds: float | Sequence[float] | Tuning = 0.5
    median: int | Sequence[int] | Tuning = 1
    max_upload_mb: float = 100.0


def spectrogram_png(path: Path, tagger: Tagger, columns: int = SPECTROGRAM_COLUMNS) -> str:
    """The file's log-mel spectrogram as a PNG data URL (time max-pooled to at most `columns`),
    computed block by block so memory stays flat for long recordings."""
    from matplotlib import colormaps
    from matplotlib.image import imsave

    cfg = tagger.frontend.config
    total_frames = cfg.n_frames(int(sf.info(str(path)).duration * cfg.sample_rate))
    pool = max(1, math.ceil(total_frames / columns))
    block_seconds = pool * cfg.hop_samples * 1000 / cfg.sample_rate  # whole pools per block
    pooled = []
    with torch.inference_mode():
        for block in audio.stream(path, sr=cfg.sample_rate, block_seconds=block_seconds):
            logmel = tagger.frontend(torch.from_numpy(block).to(tagger.device)).cpu().numpy()
            usable = len(logmel) // pool * pool or len(logmel)
            pooled.append(logmel[:usable].reshape(-1, min(pool, usable), cfg.n_mels).max(axis=1))
    image = np.concatenate(pooled).T[::-1]  # (mels, columns), low bands at the bottom
    low, high = np.percentile(image, [1, 99.5])
    rgba = colormaps["magma"](np.clip((image - low) / max(high - low, 1e-6), 0, 1))
    buffer = io.BytesIO()
    imsave(buffer, rgba, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def analyze_upload(path: Path, filename: str, tagger: Tagger, config: ViewerConfig) -> dict:
    """Everything the page draws, for one uploaded file."""
    result = tagger.analyze(path)
    peaks = np.argsort(-result.framewise.max(axis=0), kind="stable")[:config.curves]
    events = events_from_analysis(result, filename, config.thresholds, config.median)
    return {
        "filename": filename,
        "duration": result.duration,
        "frame_hop": result.frame_hop,
        "tags": [{"label": label, "score": score} for label, score in result.top(config.top_k)],
        "curves": {"times": np.round(result.times, 4).tolist(),
                   "series": [{"label": result.labels[k],
                               "values": np.round(result.framewise[:, k].astype(np.float64), 5).tolist()}
                              for k in peaks]},
        "events": [{"label": e.label, "onset": e.onset, "offset": e.offset} for e in events],
        "spectrogram": spectrogram_png(path, tagger),
    }


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def allowed_hosts(host: str, extra: Sequence[str] = ()) -> list[str]:
    """Host names the server answers to: the address it listens on (its loopback names when that
    is a loopback address) plus `extra`. Any other `Host` header gets 400, so a web page that
    points its own domain at 127.0.0.1 (DNS rebinding) cannot read the API."""
    names = list(LOOPBACK_NAMES) if host in LOOPBACK_NAMES else [host, *LOOPBACK_NAMES]
    if host in ("0.0.0.0", "::"):  # every interface: this machine's own names
        import socket

        names += [socket.gethostname(), socket.getfqdn()]
    return sorted({*names, *extra} - {"0.0.0.0", "::"})


async def read_upload(request, config: ViewerConfig) -> bytes:
    """The uploaded file's bytes; `UploadError` for an empty or too large upload. Too large uploads
    are read to the end and dropped: answering before the client has sent everything breaks its
    connection, and the page could not show the message."""
    limit = int(config.max_upload_mb * 1024 * 1024)
    body, size = bytearray(), 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            body += chunk
    if size > limit:
        raise UploadError(413, f"the file is {size / 2**20:.1f} MB; the limit is {config.max_upload_mb:g} MB")
    if not body:
        raise UploadError(400, "the upload is empty")
    return bytes(body)


def form_file(body: bytes, content_type: str) -> tuple[bytes, str]:
    """The bytes and file name of the first file field of a `multipart/form-data` body (RFC 7578).
    `UploadError` (400) for a form without a file or a body that is not the form it says."""
    from email.message import Message
    from email.parser import BytesHeaderParser

    header = Message()
    header["content-type"] = content_type
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise UploadError(400, "a multipart upload without a boundary in its Content-Type")
    # each part follows CRLF "--boundary"; the body's first delimiter has no CRLF before it
    for part in (b"\r\n" + body).split(b"\r\n--" + boundary.encode("latin-1"))[1:]:
        if part.startswith(b"--"):  # the closing delimiter
            break
        head, separator, content = part.partition(b"\r\n\r\n")
        filename = BytesHeaderParser().parsebytes(head.lstrip(b" \t\r\n")).get_filename() if separator else None
        if filename is not None:
            return content, Path(filename).name or "upload"
    raise UploadError(400, "the form holds no file: send the audio as a file field (curl -F file=@clip.wav) or as "
                           "the raw request body")


def upload_content(body: bytes, content_type: str, filename: str) -> tuple[bytes, str]:
    """(bytes, file name) of an upload: a multipart form's first file, else the raw body, whatever
    its type says (`curl --data-binary` labels a raw file as a URL-encoded form)."""
    if content_type.split(";")[0].strip().lower() != "multipart/form-data":
        return body, filename
    data, named = form_file(body, content_type)
    if not data:
        raise UploadError(400, f"the form's file {named} is empty")
    return data, named


def analyze_bytes(data: bytes, filename: str, tagger: Tagger, config: ViewerConfig, lock: threading.Lock) -> dict:
    """`analyze_upload` on uploaded bytes (written to a temporary file; one analysis at a time)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("upload" + Path(filename).suffix.lower()[:8])
        path.write_bytes(data)
        with lock:
            try:
                return analyze_upload(path, filename, tagger, config)
            except audio.AudioError as exc:
                reason = exc.reason.replace(str(path), filename)
                raise UploadError(400, f"{filename} is not an audio file this viewer can read ({reason})") from None


def create_app(tagger: Tagger, config: ViewerConfig = ViewerConfig(), hosts: Sequence[str] = LOOPBACK_NAMES):
    """The Starlette application (the API of the module docstring, the page and its static files),
    answering only requests for `hosts` (see `allowed_hosts`); `serve` runs it with uvicorn."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import ClientDisconnect, Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    model_lock = threading.Lock()  # one analysis at a time: the model already uses every core

    async def index(request: Request):
        return FileResponse(STATIC / "index.html")

    async def info(request: Request):
        return JSONResponse({"labels": list(tagger.labels.names), "frame_hop": tagger.frame_hop,
                             "window_s": tagger.window_s, "max_upload_mb": config.max_upload_mb,
                             "top_k": config.top_k})

    async def analyze(request: Request):
        filename = Path(request.headers.get("x-filename", "upload")).name or "upload"
        try:
            data, filename = upload_content(await read_upload(request, config), request.headers.get("content-type", ""),
                                            filename)
            return JSONResponse(await run_in_threadpool(analyze_bytes, data, filename, tagger, config, model_lock))
        except UploadError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except ClientDisconnect:  # nobody is left to answer: one line, no traceback
            log.warning("upload of %s: the client disconnected before sending it whole", filename)
            return Response(status_code=400)
        except Exception as exc:  # a bug must not take the server down; the page shows the message
            log.exception("analysing %s failed", filename)
            return JSONResponse({"error": f"analysis failed: {type(exc).__name__}: {exc}"}, status_code=500)

    return Starlette(routes=[
        Route("/", index),
        Route("/api/info", info),
        Route("/api/analyze", analyze, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ], middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))])


def serve(tagger: Tagger, config: ViewerConfig = ViewerConfig(), host: str = "127.0.0.1", port: int = 8765,
          extra_hosts: Sequence[str] = ()) -> None:
    """Run the viewer until interrupted; it answers requests for `allowed_hosts(host, extra_hosts)`."""
    import uvicorn

    check_number("port", port, integer=True, low=1, high=65535)
    if host not in LOOPBACK_NAMES:
        log.warning("serving on %s: anyone who can reach this address can upload files", host)
    print(f"audioscene viewer on http://{host}:{port}/ (Ctrl+C to stop)", flush=True)
    uvicorn.run(create_app(tagger, config, allowed_hosts(host, extra_hosts)), host=host, port=port,
                log_level="warning")
