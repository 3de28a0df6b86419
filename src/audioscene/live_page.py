"""The live page of a stream (`audioscene listen --view`, `detect --stream ... --view`): a scrolling
spectrogram, the score lines of the latest window's top classes and the list of events, updated as
the stream plays, served on loopback (the viewer's Host check applies) with server-sent events.

`LivePage.watch(stream)` attaches it to a `live.LiveStream`: after each window it publishes the log-mel
of the audio the window added (max-pooled to `COLUMNS_PER_S` columns per second, bytes 0–255 over
the range seen so far) and that audio's frame scores for the top classes; `publish_line` sends each
line the stream decides. A page that connects late first gets the last `HISTORY` messages.

API: `GET /` the page, `GET /api/stream` a `text/event-stream` of JSON messages (`spec`, `scores`,
`line`), `GET /static/...` its files (no CDN).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .errors import check_number
from .live import LiveLine, LiveStream
from .viewer import LOOPBACK_NAMES, allowed_hosts

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "resources" / "live"
COLUMNS_PER_S = 25  # spectrogram columns per second of audio
HISTORY = 400  # messages a newly connected page receives first
TOP_CLASSES = 3  # score lines drawn


class LivePage:
    """Messages of one stream for the pages connected to it (thread-safe: the stream runs in the
    caller's thread, the server in its own)."""

    def __init__(self):
        self.history: deque[str] = deque(maxlen=HISTORY)
        self.clients: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = []
        self.lock = threading.Lock()
        self.range = [np.inf, -np.inf]  # log-mel values seen: the spectrogram's colour scale

    def publish(self, message: dict) -> None:
        text = json.dumps(message)
        with self.lock:
            self.history.append(text)
            clients = list(self.clients)
        for loop, queue in clients:
            loop.call_soon_threadsafe(queue.put_nowait, text)

    def publish_line(self, line: LiveLine) -> None:
        self.publish({"type": "line", **json.loads(line.json())})

    def watch(self, stream: LiveStream) -> None:
        """Publish each window of `stream` as it runs (see the module docstring)."""
        stream.watchers.append(self._window)

    def _window(self, stream: LiveStream, start: int, wave: np.ndarray, clip: np.ndarray, frames: np.ndarray) -> None:
        tagger, rate = stream.tagger, stream.tagger.sample_rate
        new = wave[max(len(wave) - stream.hop, 0):] if start else wave  # the audio this window added
        began = (start + len(wave) - len(new)) / rate
        with torch.inference_mode():
            logmel = tagger.frontend(torch.from_numpy(np.ascontiguousarray(new)).to(tagger.device)).cpu().numpy()
        pool = max(1, round(1 / (COLUMNS_PER_S * tagger.frontend.config.hop_ms / 1000)))
        columns = logmel[:len(logmel) // pool * pool].reshape(-1, pool, logmel.shape[1]).max(axis=1)
        if len(columns):
            self.range = [min(self.range[0], float(columns.min())), max(self.range[1], float(columns.max()))]
            low, high = self.range
            scaled = np.round(255 * (columns - low) / max(high - low, 1e-6)).astype(np.uint8)
            self.publish({"type": "spec", "t": began, "column_s": pool * tagger.frontend.config.hop_ms / 1000,
                          "columns": scaled[:, ::-1].tolist()})  # high bands first: drawn top down
        first = int(round(began / stream.tagger.frame_hop)) - start // stream.frame_samples
        top = np.argsort(-clip, kind="stable")[:TOP_CLASSES]
        shown = frames[max(first, 0):]
        if len(shown):
            self.publish({"type": "scores", "t": (start // stream.frame_samples + max(first, 0)) * tagger.frame_hop,
                          "hop": tagger.frame_hop, "labels": [stream.labels[k] for k in top],
                          "values": np.round(shown[:, top].T, 4).tolist()})

    async def subscribe(self):
        """The messages for one page: the history, then each new one as it comes."""
        queue: asyncio.Queue = asyncio.Queue()
        entry = (asyncio.get_running_loop(), queue)
        with self.lock:
            backlog = list(self.history)
            self.clients.append(entry)
        try:
            for text in backlog:
                yield text
            while True:
                yield await queue.get()
        finally:
            with self.lock:
                self.clients.remove(entry)


def create_app(page: LivePage, hosts: Sequence[str] = LOOPBACK_NAMES):
    """The Starlette application (the module docstring's API), answering only requests for `hosts`."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.responses import FileResponse, StreamingResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    async def index(request):
        return FileResponse(STATIC / "index.html")

    async def events(request):
        async def stream():
            yield "retry: 1000\n\n"
            async for text in page.subscribe():
                yield f"data: {text}\n\n"
        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    return Starlette(routes=[
        Route("/", index),
        Route("/api/stream", events),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ], middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts))])


def serve_in_background(page: LivePage, host: str = "127.0.0.1", port: int = 8766, extra_hosts: Sequence[str] = ()):
    """Start the page's server in a daemon thread; returns `(url, server)` once it listens (`port` 0:
    a free one). Stop it with `server.should_exit = True`."""
    import uvicorn

    check_number("port", port, integer=True, low=0, high=65535)
    if host not in LOOPBACK_NAMES:
        log.warning("serving the live page on %s: anyone who can reach this address can watch the stream", host)
    server = uvicorn.Server(uvicorn.Config(create_app(page, allowed_hosts(host, extra_hosts)), host=host, port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise OSError(f"the live page could not listen on {host}:{port}")
        time.sleep(0.05)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return f"http://{'[' + host + ']' if ':' in host else host}:{bound}/", server
