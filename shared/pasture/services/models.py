"""Which chat model a request gets: the project's `runtime.models`, or the server default.

Model instances are built by a factory that bootstrap provides (so services never import an
adapter) and cached: a local GGUF loads once per process however many projects name it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable

from pasture.domain.errors import Invalid
from pasture.domain.projects import ModelConfig, ProjectConfig
from pasture.ports import ChatModel

# What a project without runtime.models gets (the `server` template writes the same entry).
SERVER_DEFAULT = ModelConfig(
    name="default",
    provider="llamacpp",
    model="smollm2-135m-instruct",
    default=True,
    description="SmolLM2-135M-Instruct, embedded, run in process by llama.cpp",
)

# (cache key, builder) for one model config; raises Invalid for a config it cannot serve.
ModelFactory = Callable[[ModelConfig], tuple[Hashable, Callable[[], ChatModel]]]


class ModelCatalog:
    def __init__(self, factory: ModelFactory) -> None:
        self._factory = factory
        self._loaded: dict[Hashable, ChatModel] = {}
        self._lock = threading.Lock()

    @staticmethod
    def configured(cfg: ProjectConfig) -> list[ModelConfig]:
        """The project's models as `GET .../models` lists them, default flag resolved."""
        models = cfg.runtime.models or [SERVER_DEFAULT]
        default = _default_name(cfg)
        return [m.model_copy(update={"default": m.name == default}) for m in models]

    def resolve(self, cfg: ProjectConfig, requested: str | None) -> tuple[ModelConfig, ChatModel]:
        models = self.configured(cfg)
        if requested:
            # The configured name first; the underlying model id too, as OpenAI clients send it.
            match = next((m for m in models if m.name == requested), None) or next(
                (m for m in models if m.model == requested), None
            )
            if match is None:
                raise Invalid(
                    f"model {requested!r} is not configured for this project"
                    f" (available: {', '.join(m.name for m in models)})"
                )
        else:
            match = next(m for m in models if m.default)
        return match, self.load(match)

    def check(self, mc: ModelConfig) -> None:
        """Raise Invalid unless `mc` names a model this server can run (nothing is loaded)."""
        self._factory(mc)

    def load(self, mc: ModelConfig) -> ChatModel:
        key, build = self._factory(mc)
        with self._lock:  # one load per model, even when two first requests race
            model = self._loaded.get(key)
            if model is None:
                model = self._loaded[key] = build()
            return model

    def loaded(self) -> list[ChatModel]:
        with self._lock:
            return list(self._loaded.values())


def _default_name(cfg: ProjectConfig) -> str:
    models = cfg.runtime.models or [SERVER_DEFAULT]
    if cfg.runtime.default_model:
        return cfg.runtime.default_model
    flagged = [m.name for m in models if m.default]
    return flagged[0] if flagged else models[0].name
