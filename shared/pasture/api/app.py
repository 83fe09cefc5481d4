"""The app factory: all groups for `pasture serve`, one group per Lambda."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI

from pasture import __version__
from pasture.api.errors import install_error_handlers
from pasture.api.groups import GROUPS, Group
from pasture.api.middleware import BodyLimitMiddleware
from pasture.bootstrap import Container, build_container
from pasture.config import Settings, get_settings

# Multipart framing on top of the largest file we accept.
_MULTIPART_OVERHEAD = 1024 * 1024
_AUDIO_FORM_OVERHEAD = 64 * 1024


def create_app(
    groups: Sequence[Group] = GROUPS,
    *,
    settings: Settings | None = None,
    container: Container | None = None,
) -> FastAPI:
    """`container` is for tests that bring their own; otherwise it is built at startup and
    closed at shutdown."""
    s = settings or (container.settings if container else get_settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = container is None
        app.state.container = container or build_container(s)
        try:
            yield
        finally:
            if owned:
                app.state.container.close()

    app = FastAPI(
        title="Pasture",
        version=__version__,
        description="RAG, chat and speech API speaking the LlamaFarm, RAGFlow, LlamaChat,"
        " llama_internet_chatbot and OpenAI dialects.",
        lifespan=lifespan,
    )
    if container is not None:
        app.state.container = container
    install_error_handlers(app)
    for g in groups:
        for router in g.load_routers():
            app.include_router(router)
    # Speech uploads have their own limit (the other form fields are a few short strings).
    audio = s.max_audio_bytes + _AUDIO_FORM_OVERHEAD
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=s.max_upload_bytes + _MULTIPART_OVERHEAD,
        limits={"/api/transcription": audio, "/v1/audio": audio},
    )
    return app
