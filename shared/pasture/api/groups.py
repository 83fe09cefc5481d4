"""The route manifest: every resource group, once. The local app, the Lambda handlers and the
CDK stack all read this; nothing else decides routing.

Routers are named by import path so a Lambda for one group imports only that group's code.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from fastapi import APIRouter

LF = "/v1/projects/{namespace}/{project}"
RF = "/api/v1"  # RAGFlow; its singular-path draft shares the handlers


@dataclass(frozen=True)
class Group:
    name: str
    routers: tuple[str, ...]  # "module:attribute" of APIRouter objects
    prefixes: tuple[str, ...]  # path prefixes (API Gateway resources) the group owns
    ports: frozenset[str]  # which ports its function needs (drives IAM on AWS)
    streams: bool = False

    def load_routers(self) -> list[APIRouter]:
        out = []
        for ref in self.routers:
            module, _, attr = ref.partition(":")
            out.append(getattr(importlib.import_module(module), attr))
        return out


GROUPS: tuple[Group, ...] = (
    Group(
        "system",
        ("pasture.api.system.routes:router",),
        ("/", "/info", "/health"),
        frozenset({"records"}),
    ),
    Group(
        "projects",
        ("pasture.api.llamafarm.projects:router", "pasture.api.llamafarm.examples:router"),
        ("/v1/projects/{namespace}", LF, "/v1/examples"),
        # Importing an example uploads its files and may start their processing.
        frozenset({"records", "blobs", "search_index", "workflow"}),
    ),
    Group(
        "datasets",
        (
            "pasture.api.llamafarm.datasets:router",
            "pasture.api.ragflow.datasets:router",
            "pasture.api.ragflow.documents:router",
        ),
        (f"{LF}/datasets", f"{RF}/datasets", f"{RF}/dataset"),
        frozenset({"records", "blobs", "search_index", "workflow", "embedder"}),
    ),
    Group(
        "retrieval",
        ("pasture.api.llamafarm.rag:router", "pasture.api.ragflow.retrieval:router"),
        (f"{LF}/rag", f"{RF}/retrieval", f"{RF}/dataset/{{dataset_id}}/retrieval"),
        # RAGFlow's `keyword: true` asks the chat model for extra keywords.
        frozenset({"records", "search_index", "embedder", "chat_model"}),
    ),
    Group(
        "chat",
        (
            "pasture.api.llamafarm.chat:router",
            "pasture.api.ragflow.chats:router",
            "pasture.api.ragflow.agents:router",
            "pasture.api.llamachat.conversations:router",
            "pasture.api.internet_chatbot.chats:router",
            "pasture.api.internet_chatbot.conversations:router",
        ),
        (
            f"{LF}/chat",
            f"{LF}/models",
            f"{RF}/chats",
            f"{RF}/chat",
            f"{RF}/agents",
            "/api/conversations",
            "/chats",
            "/conversations",
        ),
        # The internet chatbot's web answers search the web and fetch pages (egress).
        frozenset({"records", "search_index", "embedder", "chat_model", "web"}),
        streams=True,
    ),
    Group(
        "transcription",
        ("pasture.api.llamachat.transcription:router", "pasture.api.openai.audio:router"),
        ("/api/transcription", "/v1/audio"),
        frozenset({"transcriber"}),
    ),
    Group(
        "tasks",
        ("pasture.api.llamafarm.tasks:router",),
        (f"{LF}/tasks",),
        frozenset({"records", "workflow"}),
    ),
    Group(
        "accounts",
        ("pasture.api.ragflow.accounts:router",),
        ("/v1/user", "/v1/system"),
        # Keys made by /v1/system/new_token are API Gateway keys too on AWS.
        frozenset({"records", "api_keys"}),
    ),
)


def group(name: str) -> Group:
    for g in GROUPS:
        if g.name == name:
            return g
    raise KeyError(f"unknown group {name!r} (known: {', '.join(g.name for g in GROUPS)})")
