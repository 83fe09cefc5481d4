"""Agents: a small RAGFlow-style canvas, Begin -> Retrieval -> Generate -> Answer.

RAGFlow has no API that creates agents; Pasture adds `POST /api/v1/agents` (an extension) that
takes either a RAGFlow DSL built from those four components or a compact form, and stores the
DSL in RAGFlow's shape so `GET /agents` shows what RAGFlow would. Running an agent compiles the
DSL into an assistant turn: Begin gives the greeting and the input parameters, Retrieval the
datasets and thresholds, Generate the model, sampling and prompt (`{input}` is what Retrieval
found; Begin's parameter keys may appear as `{key}`), Answer streams the result.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pasture.domain.errors import Invalid, NotFound
from pasture.ports import Record, Records
from pasture.services import keys
from pasture.services.assistants import (
    AssistantService,
    AssistantTurn,
    Conversation,
    record_data,
)
from pasture.services.dataset_search import MAX_TOP_K

PROLOGUE = "Hi! I'm your smart assistant. What can I do for you?"
GENERATE_PROMPT = (
    "You are a helpful assistant. Use the knowledge below to answer the user's question with"
    " its facts.\n\nKnowledge:\n{input}"
)
SUPPORTED = ("Begin", "Retrieval", "Generate", "Answer")
# Number settings a turn reads, with the ranges RAGFlow's chats accept (None: the default).
_RANGES = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
    "similarity_threshold": (0.0, 1.0),
    "keywords_similarity_weight": (0.0, 1.0),
}
_COUNTS = {"max_tokens": (1, None), "top_n": (1, 64), "top_k": (1, None)}


@dataclass(frozen=True)
class Agent:
    tenant: str
    id: str
    title: str
    description: str | None
    avatar: str | None
    dsl: dict[str, Any]
    created_at: float
    updated_at: float

    def data(self) -> dict[str, Any]:
        return record_data(self)


@dataclass(frozen=True)
class Plan:
    """What the DSL means for a turn."""

    prologue: str
    params: list[dict[str, Any]]  # Begin's inputs: {key, name, optional, type}
    dataset_ids: list[str]
    retrieval: dict[str, Any]
    llm: dict[str, Any]
    prompt: str
    cite: bool


def _component(name: str, params: dict[str, Any], up: list[str], down: list[str]) -> dict:
    return {
        "obj": {"component_name": name.split(":")[0], "params": params},
        "upstream": up,
        "downstream": down,
    }


def build_dsl(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The compact form -> a four-component DSL in RAGFlow's shape."""
    dataset_ids = fields.get("dataset_ids") or []
    llm = fields.get("llm") or {}
    retrieval = fields.get("retrieval") or {}
    if not isinstance(llm, dict) or not isinstance(retrieval, dict):
        raise Invalid("`llm` and `retrieval` must be objects")
    ids = ["begin", "Retrieval:0", "Generate:0", "Answer:0"]
    components = {
        "begin": _component(
            "Begin",
            {"prologue": fields.get("opener") or PROLOGUE, "query": fields.get("params") or []},
            [],
            [ids[1]],
        ),
        ids[1]: _component(
            "Retrieval",
            {
                "kb_ids": dataset_ids,
                "similarity_threshold": retrieval.get("similarity_threshold", 0.2),
                "keywords_similarity_weight": retrieval.get("keywords_similarity_weight", 0.7),
                "top_n": retrieval.get("top_n", 6),
                "top_k": retrieval.get("top_k", MAX_TOP_K),
                "empty_response": retrieval.get("empty_response", ""),
            },
            [ids[0]],
            [ids[2]],
        ),
        ids[2]: _component(
            "Generate",
            {
                "llm_id": llm.get("model_name"),
                "prompt": fields.get("prompt") or GENERATE_PROMPT,
                "temperature": llm.get("temperature", 0.1),
                "top_p": llm.get("top_p", 0.3),
                "presence_penalty": llm.get("presence_penalty", 0.4),
                "frequency_penalty": llm.get("frequency_penalty", 0.7),
                "max_tokens": llm.get("max_tokens", 512),
                "cite": fields.get("cite", True),
                "message_history_window_size": 12,
            },
            [ids[1]],
            [ids[3]],
        ),
        ids[3]: _component("Answer", {}, [ids[2]], []),
    }
    nodes = [
        {"id": i, "data": {"label": i.split(":")[0], "name": i}, "type": f"{i.split(':')[0]}Node"}
        for i in ids
    ]
    edges = [{"id": f"{a}->{b}", "source": a, "target": b} for a, b in itertools.pairwise(ids)]
    return {
        "components": components,
        "graph": {"nodes": nodes, "edges": edges},
        "history": [],
        "messages": [],
        "path": [],
        "reference": [],
        "answer": [],
    }


def compile_dsl(dsl: Any) -> Plan:
    """Check the DSL is one chain Begin -> [Retrieval] -> Generate -> Answer and read it."""
    if not isinstance(dsl, dict) or not isinstance(dsl.get("components"), dict):
        raise Invalid("`dsl.components` is required")
    comps: dict[str, Any] = dsl["components"]
    if "begin" not in comps:
        raise Invalid("the agent has no `begin` component")
    for cid, comp in comps.items():
        # Every component, reachable or not: the stored DSL must not show what never runs.
        if not isinstance(comp, dict) or not isinstance(comp.get("obj"), dict):
            raise Invalid(f"component {cid!r} is missing")
        kind = comp["obj"].get("component_name")
        if kind not in SUPPORTED:
            raise Invalid(
                f"component {kind!r} is not supported (supported: {', '.join(SUPPORTED)})"
            )
        if not isinstance(comp["obj"].get("params") or {}, dict):
            raise Invalid(f"the `params` of component {cid!r} must be an object")
        down = comp.get("downstream") or []
        if not isinstance(down, list) or not all(isinstance(d, str) for d in down):
            raise Invalid(f"the `downstream` of component {cid!r} must be a list of ids")
    chain: list[tuple[str, dict[str, Any]]] = []
    current, seen = "begin", set()
    while current:
        if current in seen:
            raise Invalid("the agent's components form a loop")
        seen.add(current)
        comp = comps.get(current)
        if comp is None:
            raise Invalid(f"component {current!r} is missing")
        chain.append((comp["obj"]["component_name"], comp["obj"].get("params") or {}))
        down = comp.get("downstream") or []
        if len(down) > 1:
            raise Invalid(f"component {current!r} has more than one downstream component")
        current = down[0] if down else ""
    if [k for k, _ in chain] not in (list(SUPPORTED), ["Begin", "Generate", "Answer"]):
        raise Invalid("an agent runs Begin -> Retrieval -> Generate -> Answer (Retrieval optional)")
    by = dict(chain)
    begin, ret, gen = by["Begin"], by.get("Retrieval", {}), by["Generate"]
    params = begin.get("query") or []
    if not isinstance(params, list) or not all(
        isinstance(p, dict) and isinstance(p.get("key"), str) for p in params
    ):
        raise Invalid("Begin's `query` must be a list of {key, name, optional, type}")
    for p in params:
        if p["key"] in ("input", "knowledge"):
            # `{input}` is what Retrieval found (`{knowledge}` inside the turn): the value
            # of an input by that name would never reach the prompt.
            raise Invalid(f"Begin's parameter key `{p['key']}` is reserved")
    kb_ids = ret.get("kb_ids") or []
    if not isinstance(kb_ids, list) or not all(isinstance(i, str) for i in kb_ids):
        raise Invalid("Retrieval's `kb_ids` must be a list of dataset ids")
    for name, section, key in (
        ("Begin", begin, "prologue"),
        ("Retrieval", ret, "empty_response"),
        ("Generate", gen, "prompt"),
    ):
        if section.get(key) is not None and not isinstance(section[key], str):
            raise Invalid(f"{name}'s `{key}` must be a string")
    for name, section in (("Retrieval", ret), ("Generate", gen)):
        _check_numbers(name, section)

    def setting(key: str, default: Any) -> Any:
        return default if ret.get(key) is None else ret[key]

    return Plan(
        prologue=str(begin.get("prologue") or ""),
        params=params,
        dataset_ids=kb_ids,
        retrieval={
            "similarity_threshold": setting("similarity_threshold", 0.2),
            "keywords_similarity_weight": setting("keywords_similarity_weight", 0.7),
            "top_n": setting("top_n", 6),
            "top_k": setting("top_k", MAX_TOP_K),
            "empty_response": setting("empty_response", ""),
        },
        llm={
            "model_name": gen.get("llm_id"),
            **{
                k: gen[k]
                for k in (
                    "temperature",
                    "top_p",
                    "presence_penalty",
                    "frequency_penalty",
                    "max_tokens",
                )
                if k in gen
            },
        },
        prompt=str(gen.get("prompt") or GENERATE_PROMPT),
        cite=bool(gen.get("cite", True)),
    )


def _check_numbers(component: str, params: Mapping[str, Any]) -> None:
    """A turn does arithmetic with these: refuse what it cannot use when the agent is created,
    not with an internal error at the first question."""
    for key, (lo, hi) in _RANGES.items():
        v = params.get(key)
        if v is not None and (
            isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi
        ):
            raise Invalid(f"{component}'s `{key}` must be a number between {lo:g} and {hi:g}")
    for key, (low, high) in _COUNTS.items():
        v = params.get(key)
        if v is not None and (
            isinstance(v, bool) or not isinstance(v, int) or v < low or (high and v > high)
        ):
            upper = f" and at most {high}" if high else ""
            raise Invalid(f"{component}'s `{key}` must be an integer of at least {low}{upper}")


class AgentService:
    def __init__(
        self,
        records: Records,
        assistants: AssistantService,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._records = records
        self._assistants = assistants
        self._clock = clock

    def create(self, tenant: str, fields: Mapping[str, Any]) -> Agent:
        title = fields.get("title") or fields.get("name")
        if not isinstance(title, str) or not title.strip():
            raise Invalid("`title` is required.")
        dsl = fields.get("dsl")
        if dsl is None:
            dsl = build_dsl(fields)
        plan = compile_dsl(dsl)
        self._assistants.model_config(plan.llm.get("model_name"))
        for ds_id in plan.dataset_ids:
            ds = self._assistants.dataset(tenant, ds_id)
            if ds is None:
                raise NotFound(f"You don't own the dataset {ds_id}")
        now = self._clock()
        agent = Agent(
            tenant,
            uuid.uuid1().hex,
            title.strip(),
            fields.get("description"),
            fields.get("avatar"),
            dsl,
            now,
            now,
        )
        self._records.put(Record(keys.agents(tenant), agent.id, agent.data()), if_absent=True)
        return agent

    def get(self, tenant: str, agent_id: str) -> Agent:
        rec = self._records.get(keys.agents(tenant), agent_id) if agent_id else None
        if rec is None:
            raise NotFound(f"You don't own the agent {agent_id}.")
        return Agent(tenant=tenant, **dict(rec.data))

    def all(self, tenant: str) -> list[Agent]:
        return [
            Agent(tenant=tenant, **dict(r.data))
            for r in self._records.query(keys.agents(tenant), "", limit=None)
        ]

    def delete(self, tenant: str, agent_id: str) -> None:
        agent = self.get(tenant, agent_id)
        self._assistants.purge_conversations(tenant, agent.id)
        self._records.delete(keys.agents(tenant), agent.id)

    @staticmethod
    def _inputs(plan: Plan, given: Mapping[str, Any], *, required: bool) -> dict[str, str]:
        values: dict[str, str] = {}
        for p in plan.params:
            key = p["key"]
            if key in given and given[key] is not None:
                values[key] = str(given[key])
            elif required and not p.get("optional", False):
                raise Invalid(f"`{key}` is required")
        return values

    def new_session(
        self, tenant: str, agent_id: str, fields: Mapping[str, Any]
    ) -> tuple[Agent, Conversation]:
        agent = self.get(tenant, agent_id)
        plan = compile_dsl(agent.dsl)
        inputs = self._inputs(plan, fields, required=True)
        conv = self._assistants.new_conversation(
            tenant, agent.id, "agent", None, fields.get("user_id"), plan.prologue, inputs
        )
        return agent, conv

    async def ask(self, tenant: str, agent_id: str, fields: Mapping[str, Any]) -> AssistantTurn:
        agent = self.get(tenant, agent_id)
        plan = compile_dsl(agent.dsl)
        session_id = fields.get("session_id")
        stored: Mapping[str, Any] = {}
        if session_id:
            if not isinstance(session_id, str):
                raise Invalid("`session_id` must be a string")
            stored = self._assistants.conversation(tenant, agent.id, session_id).variables
        inputs = {**stored, **self._inputs(plan, fields, required=not session_id)}
        prompt = plan.prompt.replace("{input}", "{knowledge}")
        return await self._assistants.turn(
            tenant,
            owner_id=agent.id,
            kind="agent",
            dataset_ids=plan.dataset_ids,
            llm=plan.llm,
            prompt={
                **plan.retrieval,
                "prompt": prompt,
                "opener": plan.prologue,
                "show_quote": plan.cite,
                "variables": [
                    {"key": "knowledge", "optional": True},
                    *({"key": p["key"], "optional": True} for p in plan.params),
                ],
            },
            top_k=int(plan.retrieval.get("top_k") or MAX_TOP_K),
            question=fields.get("question"),
            session_id=session_id,
            user_id=fields.get("user_id"),
            variables=inputs,
            session_variables=inputs,
        )
