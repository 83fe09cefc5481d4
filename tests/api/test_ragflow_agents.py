"""RAGFlow agents over HTTP: create (a Pasture extension) and its DSL checks, list, delete,
sessions with Begin's inputs, completions streamed and not, and tenant isolation of every
`/api/v1/agents/{...}` route.

The chat model is a fake (deterministic words, recorded prompts) so prompts and answers can be
asserted exactly; retrieval, storage and the turn engine are the real ones. One test runs the
embedded default model end to end.
"""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pasture.api.app import create_app
from pasture.api.groups import GROUPS
from pasture.bootstrap import Container, build_container, chat_model_factory
from pasture.config import Settings
from pasture.domain.projects import ModelConfig
from pasture.ports import ChatModel
from tests.api.conftest import keyed_settings
from tests.helpers.fakes import FakeChatModel
from tests.helpers.ragflow_chats import Stream

API = "/api/v1"
REPLY = "Pasture fake answer: grass is green."
FINAL = b'data:{"code": 0, "message": "", "data": true}\n\n'
CITATION = re.compile(r" ?##\d+\$\$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
MEADOW = (
    b"The Zorblax meadow grass turns violet every autumn after the first frost.\n\n"
    b"Shepherds in Quillon count their sheep at dawn near the old stone bridge.\n"
)
DEFAULT_MODEL = "smollm2-135m-instruct"


def uniq(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def unknown_id() -> str:
    return uuid.uuid1().hex  # the shape of a real id


# ---------------------------------------------------------------------- client


class RF:
    """Speaks the RAGFlow API as one tenant."""

    def __init__(self, client: TestClient, key: str) -> None:
        self.c = client
        self.h = {"Authorization": f"Bearer {key}"}

    def req(self, method: str, path: str, **kw: Any) -> Any:
        return self.c.request(method, API + path, headers=self.h, **kw)

    def body(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        r = self.req(method, path, **kw)
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def ok(self, method: str, path: str, **kw: Any) -> Any:
        b = self.body(method, path, **kw)
        assert b["code"] == 0, b
        return b.get("data")

    def fail(self, method: str, path: str, **kw: Any) -> tuple[int, str]:
        """(code, message) of a RAGFlow failure: HTTP 200 and exactly {code, message}."""
        b = self.body(method, path, **kw)
        assert set(b) == {"code", "message"} and b["code"] != 0, b
        return b["code"], b["message"]

    def stream(self, path: str, body: dict[str, Any]) -> Stream:
        with self.c.stream("POST", API + path, json=body, headers=self.h) as r:
            return Stream(r.status_code, r.headers, r.read())

    def parsed_dataset(self, files: dict[str, bytes]) -> str:
        ds = self.ok(
            "POST",
            "/datasets",
            json={
                "name": uniq("ds"),
                "chunk_method": "naive",
                "parser_config": {"chunk_token_num": 24},
            },
        )["id"]
        ids = [
            self.ok("POST", f"/datasets/{ds}/documents", files={"file": (n, io.BytesIO(b))})[0][
                "id"
            ]
            for n, b in files.items()
        ]
        self.ok("POST", f"/datasets/{ds}/chunks", json={"document_ids": ids})
        deadline = time.time() + 60
        while True:
            docs = self.ok("GET", f"/datasets/{ds}/documents")["docs"]
            runs = {d["id"]: d["run"] for d in docs if d["id"] in ids}
            if all(r in ("DONE", "FAIL", "CANCEL") for r in runs.values()):
                assert set(runs.values()) == {"DONE"}, docs
                return str(ds)
            assert time.time() < deadline, docs
            time.sleep(0.05)

    # agents

    def agent(self, **fields: Any) -> dict[str, Any]:
        data: dict[str, Any] = self.ok("POST", "/agents", json={"title": uniq("agent"), **fields})
        return data

    def agents(self, **params: Any) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.ok("GET", "/agents", params=params)
        return data

    def session(self, agent_id: str, **fields: Any) -> dict[str, Any]:
        data: dict[str, Any] = self.ok("POST", f"/agents/{agent_id}/sessions", json=fields)
        return data

    def sessions(self, agent_id: str, **params: Any) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.ok("GET", f"/agents/{agent_id}/sessions", params=params)
        return data

    def ask(self, agent_id: str, **body: Any) -> dict[str, Any]:
        data: dict[str, Any] = self.ok(
            "POST", f"/agents/{agent_id}/completions", json={"stream": False, **body}
        )
        return data


# ---------------------------------------------------------------------- fixtures

FAKES: dict[str, FakeChatModel] = {}


def fake_factory(settings: Settings) -> Callable[[ModelConfig], tuple[Hashable, Any]]:
    """The server's own factory decides which model names exist; the model is a fake."""
    real = chat_model_factory(settings)

    def factory(mc: ModelConfig) -> tuple[Hashable, Callable[[], ChatModel]]:
        real(mc)  # raises Invalid for a model this server cannot run
        name = mc.model or mc.name
        FAKES.setdefault(name, FakeChatModel(name))
        return ("fake", name), lambda: FAKES[name]

    return factory


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, api_keys: dict[str, str]
) -> Iterator[tuple[TestClient, Container]]:
    s = keyed_settings(tmp_path_factory.mktemp("agents"), model_cache, api_keys)
    container = build_container(s, chat_factory=fake_factory(s))
    try:
        with TestClient(create_app(container=container), raise_server_exceptions=False) as c:
            yield c, container
    finally:
        container.close()


@pytest.fixture
def container(app: tuple[TestClient, Container]) -> Container:
    return app[1]


@pytest.fixture
def alice(app: tuple[TestClient, Container], api_keys: dict[str, str]) -> RF:
    return RF(app[0], api_keys["alice"])


@pytest.fixture
def bob(app: tuple[TestClient, Container], api_keys: dict[str, str]) -> RF:
    return RF(app[0], api_keys["bob"])


@pytest.fixture(scope="module")
def ds(app: tuple[TestClient, Container], api_keys: dict[str, str]) -> str:
    """Alice's dataset: two parsed paragraphs."""
    return RF(app[0], api_keys["alice"]).parsed_dataset({"meadow.txt": MEADOW})


@pytest.fixture
def fake(app: tuple[TestClient, Container]) -> FakeChatModel:
    """The default model's fake, reset for each test."""
    f = FAKES.setdefault(DEFAULT_MODEL, FakeChatModel(DEFAULT_MODEL))
    f.reply, f.delay, f.fail_after, f.context_length = REPLY, 0.0, None, 4096
    f.prompts.clear()
    f.params.clear()
    f.abandoned = 0
    return f


LANG = [{"key": "lang", "name": "Target language", "optional": False, "type": "line"}]
TONE = [{"key": "tone", "name": "Tone", "optional": True, "type": "line"}]
# A low threshold: every chunk of the dataset qualifies, so the knowledge is predictable.
FIND_ALL = {"similarity_threshold": 0.0, "top_n": 1}


def component(name: str, params: dict[str, Any], up: list[str], down: list[str]) -> dict:
    return {
        "obj": {"component_name": name, "inputs": [], "output": None, "params": params},
        "upstream": up,
        "downstream": down,
    }


def ragflow_dsl(kb_ids: list[str], prompt: str, prologue: str = "Hello from the canvas.") -> dict:
    """A DSL as RAGFlow's canvas writes it (random component ids, graph, runtime fields)."""
    b, r, g, a = (
        "begin",
        "Retrieval:GreenReadersDrum",
        "Generate:SocialYearsRemain",
        "Answer:OrangeTermsBurn",
    )
    return {
        "answer": [],
        "components": {
            b: component("Begin", {"prologue": prologue, "query": []}, [], [r]),
            r: component(
                "Retrieval",
                {
                    "kb_ids": kb_ids,
                    "similarity_threshold": 0.0,
                    "keywords_similarity_weight": 0.3,
                    "top_n": 1,
                    "top_k": 1024,
                    "empty_response": "",
                },
                [b],
                [g],
            ),
            g: component(
                "Generate",
                {
                    "cite": True,
                    "frequency_penalty": 0.7,
                    "llm_id": DEFAULT_MODEL,
                    "max_tokens": 256,
                    "message_history_window_size": 12,
                    "parameters": [],
                    "presence_penalty": 0.4,
                    "prompt": prompt,
                    "temperature": 0.1,
                    "top_p": 0.3,
                },
                [r],
                [a],
            ),
            a: component("Answer", {}, [g], []),
        },
        "embed_id": "",
        "graph": {
            "edges": [
                {"id": f"{x}->{y}", "source": x, "target": y} for x, y in ((b, r), (r, g), (g, a))
            ],
            "nodes": [
                {"data": {"label": n.split(":")[0], "name": n}, "id": n, "type": "beginNode"}
                for n in (b, r, g, a)
            ],
        },
        "history": [],
        "messages": [],
        "path": [],
        "reference": [],
    }


def knowledge(reference: dict[str, Any]) -> str:
    """What `{input}` becomes: the retrieved chunks as the turn lays them out."""
    return "\n------\n".join(
        f"Document: {c['document_name']}\n{c['content']}" for c in reference["chunks"]
    )


# ---------------------------------------------------------------------- create


def test_create_compact_form_stores_a_ragflow_dsl(alice: RF, ds: str) -> None:
    fields = {
        "title": uniq("compact"),
        "description": "answers about meadows",
        "avatar": "data:image/png;base64,AAAA",
        "dataset_ids": [ds],
        "prompt": "Answer in {lang}. Knowledge: {input}",
        "opener": "Welcome to the meadow.",
        "params": LANG,
        "llm": {"model_name": DEFAULT_MODEL, "temperature": 0.5, "max_tokens": 64},
        "retrieval": {"similarity_threshold": 0.1, "top_n": 3, "empty_response": "Nothing."},
    }
    a = alice.agent(**fields)
    assert HEX32.match(a["id"]), a["id"]
    assert (a["title"], a["description"], a["avatar"]) == (
        fields["title"],
        "answers about meadows",
        "data:image/png;base64,AAAA",
    )
    comps = a["dsl"]["components"]
    assert list(comps) == ["begin", "Retrieval:0", "Generate:0", "Answer:0"]
    for cid, comp in comps.items():
        assert set(comp) == {"obj", "upstream", "downstream"}, cid
        assert set(comp["obj"]) == {"component_name", "params"}, cid
        assert comp["obj"]["component_name"] == cid.split(":")[0].capitalize()
    chain = ["begin", "Retrieval:0", "Generate:0", "Answer:0"]
    for i, cid in enumerate(chain):
        assert comps[cid]["upstream"] == (chain[i - 1 : i] if i else []), cid
        assert comps[cid]["downstream"] == chain[i + 1 : i + 2], cid
    assert comps["begin"]["obj"]["params"] == {"prologue": "Welcome to the meadow.", "query": LANG}
    ret = comps["Retrieval:0"]["obj"]["params"]
    assert ret["kb_ids"] == [ds]
    assert (ret["similarity_threshold"], ret["top_n"], ret["empty_response"]) == (
        0.1,
        3,
        "Nothing.",
    )
    gen = comps["Generate:0"]["obj"]["params"]
    assert gen["prompt"] == "Answer in {lang}. Knowledge: {input}"
    assert (gen["llm_id"], gen["temperature"], gen["max_tokens"]) == (DEFAULT_MODEL, 0.5, 64)
    assert comps["Answer:0"]["obj"]["params"] == {}
    assert [e["source"] for e in a["dsl"]["graph"]["edges"]] == chain[:-1]
    assert [n["id"] for n in a["dsl"]["graph"]["nodes"]] == chain
    # What was stored is what GET shows.
    assert alice.agents(id=a["id"]) == [a]


def test_create_without_a_body_asks_for_a_title(alice: RF) -> None:
    assert alice.fail("POST", "/agents") == (102, "`title` is required.")


def test_create_defaults_without_datasets_or_prompt(alice: RF) -> None:
    a = alice.agent()
    comps = a["dsl"]["components"]
    assert comps["begin"]["obj"]["params"]["prologue"] == (
        "Hi! I'm your smart assistant. What can I do for you?"
    )
    assert comps["Retrieval:0"]["obj"]["params"]["kb_ids"] == []
    assert "{input}" in comps["Generate:0"]["obj"]["params"]["prompt"]
    assert (a["description"], a["avatar"]) == (None, None)


def test_create_accepts_a_full_ragflow_dsl_and_runs_it(
    alice: RF, ds: str, fake: FakeChatModel
) -> None:
    dsl = ragflow_dsl([ds], "Canvas prompt. Facts: {input}")
    a = alice.agent(dsl=dsl)
    assert a["dsl"] == dsl  # kept as given
    s = alice.session(a["id"])
    assert s["message"] == [{"role": "assistant", "content": "Hello from the canvas."}]
    out = alice.ask(
        a["id"], question="When does Zorblax meadow grass turn violet?", session_id=s["id"]
    )
    assert out["reference"]["chunks"], out
    system = fake.prompts[-1][0]
    assert system.role == "system"
    assert system.content == "Canvas prompt. Facts: " + knowledge(out["reference"])
    assert fake.params[-1].temperature == 0.1 and fake.params[-1].max_tokens <= 256


def dsl_with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    dsl = ragflow_dsl([], "{input}")
    change(dsl["components"])
    return dsl


R, G, A = "Retrieval:GreenReadersDrum", "Generate:SocialYearsRemain", "Answer:OrangeTermsBurn"


def _categorize_in_chain(c: dict[str, Any]) -> None:
    c["Categorize:0"] = component("Categorize", {"category_description": {}}, ["begin"], [R])
    c["begin"]["downstream"] = ["Categorize:0"]


def _categorize_dangling(c: dict[str, Any]) -> None:
    c["Categorize:0"] = component("Categorize", {}, [], [])


def _branch(c: dict[str, Any]) -> None:
    c["begin"]["downstream"] = [R, G]


def _loop_back(c: dict[str, Any]) -> None:
    c[G]["downstream"] = [R]


def _loop_to_begin(c: dict[str, Any]) -> None:
    c[A]["downstream"] = ["begin"]


def _wrong_order(c: dict[str, Any]) -> None:
    c["begin"]["downstream"] = [G]
    c[G]["downstream"] = [R]
    c[R]["downstream"] = [A]


def _no_generate(c: dict[str, Any]) -> None:
    c[R]["downstream"] = [A]
    del c[G]


def _dangling_edge(c: dict[str, Any]) -> None:
    c[R]["downstream"] = ["Generate:Nowhere"]


def _nested_downstream(c: dict[str, Any]) -> None:
    c["begin"]["downstream"] = [[R]]


def _string_downstream(c: dict[str, Any]) -> None:
    c["begin"]["downstream"] = R


def _params_not_object(c: dict[str, Any]) -> None:
    c[G]["obj"]["params"] = "temperature=0.1"


def _query_not_list(c: dict[str, Any]) -> None:
    c["begin"]["obj"]["params"]["query"] = "lang"


def _no_begin(c: dict[str, Any]) -> None:
    c["Begin:0"] = c.pop("begin")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _categorize_in_chain,
            "component 'Categorize' is not supported (supported: Begin, Retrieval, Generate, Answer)",
        ),
        (
            _categorize_dangling,
            "component 'Categorize' is not supported (supported: Begin, Retrieval, Generate, Answer)",
        ),
        (_branch, "component 'begin' has more than one downstream component"),
        (_loop_back, "the agent's components form a loop"),
        (_loop_to_begin, "the agent's components form a loop"),
        (
            _wrong_order,
            "an agent runs Begin -> Retrieval -> Generate -> Answer (Retrieval optional)",
        ),
        (
            _no_generate,
            "an agent runs Begin -> Retrieval -> Generate -> Answer (Retrieval optional)",
        ),
        (_dangling_edge, "component 'Generate:Nowhere' is missing"),
        (_nested_downstream, "the `downstream` of component 'begin' must be a list of ids"),
        (_string_downstream, "the `downstream` of component 'begin' must be a list of ids"),
        (_params_not_object, f"the `params` of component '{G}' must be an object"),
        (_query_not_list, "Begin's `query` must be a list of {key, name, optional, type}"),
        (_no_begin, "the agent has no `begin` component"),
    ],
)
def test_create_refuses_dsl_it_cannot_run(
    alice: RF, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    title = uniq("bad")
    assert alice.fail("POST", "/agents", json={"title": title, "dsl": dsl_with(change)}) == (
        102,
        message,
    )
    assert alice.fail("GET", "/agents", params={"name": title}) == (102, "The agent doesn't exist.")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "`title` is required."),
        ({"title": "   "}, "`title` is required."),
        ({"title": "x", "dsl": "begin->answer"}, "`dsl.components` is required"),
        ({"title": "x", "dsl": {"graph": {}}}, "`dsl.components` is required"),
        ({"title": "x", "llm": "fast"}, "`llm` and `retrieval` must be objects"),
        ({"title": "x", "llm": {"model_name": "gpt-4o"}}, "`model_name` gpt-4o doesn't exist"),
        (
            {"title": "x", "llm": {"max_tokens": "lots"}},
            "Generate's `max_tokens` must be an integer of at least 1",
        ),
        (
            {"title": "x", "llm": {"max_tokens": 0}},
            "Generate's `max_tokens` must be an integer of at least 1",
        ),
        (
            {"title": "x", "llm": {"temperature": "hot"}},
            "Generate's `temperature` must be a number between 0 and 2",
        ),
        (
            {"title": "x", "llm": {"top_p": 1.5}},
            "Generate's `top_p` must be a number between 0 and 1",
        ),
        (
            {"title": "x", "retrieval": {"top_n": "x"}},
            "Retrieval's `top_n` must be an integer of at least 1 and at most 64",
        ),
        (
            {"title": "x", "retrieval": {"similarity_threshold": 2}},
            "Retrieval's `similarity_threshold` must be a number between 0 and 1",
        ),
        ({"title": "x", "opener": 5}, "Begin's `prologue` must be a string"),
        ({"title": "x", "prompt": ["x"]}, "Generate's `prompt` must be a string"),
        (
            {"title": "x", "params": "lang"},
            "Begin's `query` must be a list of {key, name, optional, type}",
        ),
        ({"title": "x", "params": [{"key": "input"}]}, "Begin's parameter key `input` is reserved"),
        (
            {"title": "x", "params": [{"key": "knowledge", "optional": True}]},
            "Begin's parameter key `knowledge` is reserved",
        ),
    ],
)
def test_create_refuses_bad_fields_with_a_clear_message(
    alice: RF, fields: dict[str, Any], message: str
) -> None:
    before = {a["id"] for a in alice.agents(page_size=1000)}
    assert alice.fail("POST", "/agents", json=fields) == (102, message)
    assert {a["id"] for a in alice.agents(page_size=1000)} == before


def test_create_refuses_unknown_and_foreign_datasets_alike(alice: RF, bob: RF, ds: str) -> None:
    ghost = unknown_id()
    assert alice.fail("POST", "/agents", json={"title": "x", "dataset_ids": [ghost]}) == (
        102,
        f"You don't own the dataset {ghost}",
    )
    # Bob names Alice's dataset: the same answer as for a dataset that does not exist.
    assert bob.fail("POST", "/agents", json={"title": "x", "dataset_ids": [ds]}) == (
        102,
        f"You don't own the dataset {ds}",
    )
    dsl = ragflow_dsl([ds], "{input}")
    assert bob.fail("POST", "/agents", json={"title": "x", "dsl": dsl}) == (
        102,
        f"You don't own the dataset {ds}",
    )


# ---------------------------------------------------------------------- list


def test_list_shape_paging_and_filters(alice: RF) -> None:
    made = [alice.agent(title=uniq("listed")) for _ in range(3)]
    everything = alice.agents(page_size=1000)
    assert len(everything) >= 3
    for a in everything:
        assert set(a) == {
            "id",
            "title",
            "avatar",
            "canvas_type",
            "description",
            "dsl",
            "create_time",
            "create_date",
            "update_time",
            "update_date",
            "user_id",
        }, a
    assert {a["user_id"] for a in everything} == {"alice"}
    made_ids = {a["id"] for a in made}
    assert made_ids <= {a["id"] for a in everything}
    # Default order: newest first by create_time; `desc=false` turns it around.
    times = [a["create_time"] for a in everything]
    assert times == sorted(times, reverse=True)
    oldest_first = alice.agents(page_size=1000, desc="false")
    assert [a["create_time"] for a in oldest_first] == sorted(times)
    assert {a["id"] for a in oldest_first} == {a["id"] for a in everything}
    # Paging is a window on the same order; the default page size is 30.
    ids = [a["id"] for a in everything]
    assert [a["id"] for a in alice.agents(page=2, page_size=2)] == ids[2:4]
    assert [a["id"] for a in alice.agents(page=1, page_size=1)] == ids[:1]
    assert alice.agents(page=10_000, page_size=30) == []
    assert [a["id"] for a in alice.agents()] == ids[:30]
    # Filters.
    target = made[1]
    assert alice.agents(id=target["id"]) == [target]
    assert alice.agents(name=target["title"]) == [target]
    assert alice.agents(id=target["id"], name=target["title"]) == [target]
    for params in (
        {"id": unknown_id()},
        {"name": uniq("nobody")},
        {"id": target["id"], "name": made[0]["title"]},
    ):
        assert alice.fail("GET", "/agents", params=params) == (102, "The agent doesn't exist.")
    assert alice.fail("GET", "/agents", params={"orderby": "title"})[0] == 102
    assert alice.fail("GET", "/agents", params={"page": "zero"})[0] == 102


# ---------------------------------------------------------------------- delete


def test_delete_removes_the_agent_and_its_sessions(
    alice: RF, container: Container, fake: FakeChatModel
) -> None:
    a = alice.agent()
    s1 = alice.session(a["id"])
    alice.ask(a["id"], question="hello?", session_id=s1["id"])
    alice.session(a["id"])
    assert len(container.assistants.conversations("alice", a["id"])) == 2
    r = alice.body("DELETE", f"/agents/{a['id']}")
    assert r == {"code": 0}
    assert container.assistants.conversations("alice", a["id"]) == []
    gone = (102, f"You don't own the agent {a['id']}.")
    assert alice.fail("GET", "/agents", params={"id": a["id"]}) == (102, "The agent doesn't exist.")
    assert alice.fail("DELETE", f"/agents/{a['id']}") == gone
    assert alice.fail("POST", f"/agents/{a['id']}/sessions", json={}) == gone
    assert alice.fail("GET", f"/agents/{a['id']}/sessions") == gone
    assert alice.fail("POST", f"/agents/{a['id']}/completions", json={"question": "x"}) == gone


def test_delete_unknown_agent_is_an_error(alice: RF) -> None:
    ghost = unknown_id()
    assert alice.fail("DELETE", f"/agents/{ghost}") == (102, f"You don't own the agent {ghost}.")


# ---------------------------------------------------------------------- sessions


def test_session_create_has_ragflow_shape(alice: RF) -> None:
    a = alice.agent(opener="Ask me about meadows.")
    s = alice.session(a["id"], user_id="user-7")
    assert HEX32.match(s["id"])
    assert s["agent_id"] == a["id"]
    assert s["source"] == "agent"
    assert s["message"] == [{"role": "assistant", "content": "Ask me about meadows."}]
    assert s["dsl"] == a["dsl"]
    assert s["user_id"] == "user-7"
    # No body at all, as RAGFlow's client sends for an agent without inputs.
    r = alice.body("POST", f"/agents/{a['id']}/sessions")
    assert r["code"] == 0 and r["data"]["agent_id"] == a["id"], r


def test_session_requires_begin_inputs_and_keeps_them(
    alice: RF, container: Container, fake: FakeChatModel
) -> None:
    a = alice.agent(prompt="Answer in {lang} with a {tone} tone.", params=LANG + TONE)
    before = len(container.assistants.conversations("alice", a["id"]))
    assert alice.fail("POST", f"/agents/{a['id']}/sessions", json={}) == (102, "`lang` is required")
    assert alice.fail("POST", f"/agents/{a['id']}/sessions", json={"tone": "dry"}) == (
        102,
        "`lang` is required",
    )
    assert len(container.assistants.conversations("alice", a["id"])) == before
    s = alice.session(a["id"], lang="French")  # `tone` is optional
    stored = container.assistants.conversation("alice", a["id"], s["id"])
    assert stored.variables == {"lang": "French"}
    alice.ask(a["id"], question="Hi?", session_id=s["id"])
    # The stored input reached the prompt; the missing optional one became a blank.
    assert fake.prompts[-1][0].content == "Answer in French with a   tone."


def test_session_list(alice: RF, fake: FakeChatModel) -> None:
    a = alice.agent()
    s1 = alice.session(a["id"], user_id="u1")
    s2 = alice.session(a["id"], user_id="u2")
    alice.ask(a["id"], question="Hello there?", session_id=s1["id"])
    listed = alice.sessions(a["id"])
    assert {s["id"] for s in listed} == {s1["id"], s2["id"]}
    for s in listed:
        assert s["agent_id"] == a["id"] and s["source"] == "agent" and s["dsl"] == a["dsl"]
    first = next(s for s in listed if s["id"] == s1["id"])
    assert [m["role"] for m in first["message"]] == ["assistant", "user", "assistant"]
    assert first["message"][1]["content"] == "Hello there?"
    assert CITATION.sub("", first["message"][2]["content"]) == REPLY
    assert [s["id"] for s in alice.sessions(a["id"], user_id="u2")] == [s2["id"]]
    assert [s["id"] for s in alice.sessions(a["id"], id=s1["id"])] == [s1["id"]]
    assert alice.sessions(a["id"], id=unknown_id()) == []
    assert len(alice.sessions(a["id"], page=1, page_size=1)) == 1
    assert alice.sessions(a["id"], page=3, page_size=1) == []
    ghost = unknown_id()
    assert alice.fail("GET", f"/agents/{ghost}/sessions") == (
        102,
        f"You don't own the agent {ghost}.",
    )


# ---------------------------------------------------------------------- completions


def test_completion_stream_frames(alice: RF, ds: str, fake: FakeChatModel) -> None:
    a = alice.agent(dataset_ids=[ds], retrieval=FIND_ALL)
    s = alice.session(a["id"])
    st = alice.stream(
        f"/agents/{a['id']}/completions",
        {"question": "What colour is Zorblax meadow grass?", "session_id": s["id"], "stream": True},
    )
    assert st.status == 200
    assert st.headers["content-type"].startswith("text/event-stream")
    # `data:` without a space; the last frame is exactly RAGFlow's end marker.
    assert st.raw.endswith(FINAL) and b"data: " not in st.raw
    payloads = st.payloads
    assert payloads[-1] == {"code": 0, "message": "", "data": True}
    for p in payloads:
        assert p["code"] == 0 and p["message"] == "", p
    content = st.content
    assert len(content) == len(REPLY.split()) + 1  # one frame per word, then the final answer
    words = REPLY.split()
    assert [c["answer"] for c in content[:-1]] == [
        " ".join(words[: i + 1]) for i in range(len(words))
    ]
    assert {(c["id"], c["session_id"]) for c in content} == {(content[0]["id"], s["id"])}
    assert all(c["reference"] == {} for c in content[:-1])
    last = content[-1]
    assert CITATION.sub("", last["answer"]) == REPLY
    ref = last["reference"]
    assert ref["total"] == len(ref["chunks"]) == 1
    chunk = ref["chunks"][0]
    assert chunk["dataset_id"] == ds and chunk["document_name"] == "meadow.txt"
    assert "Zorblax" in chunk["content"]
    assert ref["doc_aggs"] == [
        {"doc_name": "meadow.txt", "doc_id": chunk["document_id"], "count": 1}
    ]
    # Streaming is RAGFlow's default.
    st2 = alice.stream(
        f"/agents/{a['id']}/completions", {"question": "Again?", "session_id": s["id"]}
    )
    assert st2.raw.endswith(FINAL) and len(st2.content) == len(words) + 1


def test_citations_follow_the_generate_cite_flag(alice: RF, ds: str, fake: FakeChatModel) -> None:
    # An answer that repeats the chunk's sentence is cited by it, unless Generate says no.
    fake.reply = "The Zorblax meadow grass turns violet every autumn after the first frost."
    question = {"question": "What colour does Zorblax meadow grass turn?"}
    cited = alice.ask(alice.agent(dataset_ids=[ds], retrieval=FIND_ALL)["id"], **question)
    assert re.search(r"##0\$\$", cited["answer"]), cited["answer"]
    assert CITATION.sub("", cited["answer"]) == fake.reply
    plain = alice.agent(dataset_ids=[ds], retrieval=FIND_ALL, cite=False)
    assert plain["dsl"]["components"]["Generate:0"]["obj"]["params"]["cite"] is False
    out = alice.ask(plain["id"], **question)
    assert out["answer"] == fake.reply
    assert out["reference"]["chunks"], out  # the reference is still given


def test_completion_not_streamed(alice: RF, ds: str, fake: FakeChatModel) -> None:
    a = alice.agent(dataset_ids=[ds], retrieval=FIND_ALL)
    s = alice.session(a["id"])
    r = alice.body(
        "POST",
        f"/agents/{a['id']}/completions",
        json={
            "question": "Where do shepherds count sheep?",
            "session_id": s["id"],
            "stream": False,
        },
    )
    assert r["code"] == 0, r
    data = r["data"]
    assert data["session_id"] == s["id"]
    assert uuid.UUID(data["id"]).version == 4
    assert CITATION.sub("", data["answer"]) == REPLY
    assert data["reference"]["total"] == 1 and data["reference"]["chunks"][0]["dataset_id"] == ds
    assert len(fake.prompts) == 1


def test_completion_error_inside_the_stream_is_a_frame(alice: RF, fake: FakeChatModel) -> None:
    a = alice.agent()
    fake.fail_after = 2
    st = alice.stream(f"/agents/{a['id']}/completions", {"question": "Break?"})
    payloads = st.payloads
    assert [p["data"]["answer"] for p in payloads[:2]] == ["Pasture", "Pasture fake"]
    assert payloads[2]["code"] == 500 and payloads[2]["message"] == "fake model backend failed"
    assert st.raw.endswith(FINAL)


def test_completion_refuses_bad_bodies(alice: RF, fake: FakeChatModel) -> None:
    a = alice.agent()
    s = alice.session(a["id"])
    path = f"/agents/{a['id']}/completions"
    ghost = unknown_id()
    assert alice.fail("POST", path, json={"session_id": s["id"]}) == (
        102,
        "`question` is required.",
    )
    assert alice.fail("POST", path, json={"session_id": s["id"], "question": "  "}) == (
        102,
        "`question` is required.",
    )
    assert alice.fail("POST", path, json={"session_id": ghost, "question": "x"}) == (
        102,
        f"The session {ghost} doesn't exist",
    )
    assert alice.fail("POST", path, json={"question": 5})[0] == 102
    assert alice.fail("POST", path, json={"question": "x", "stream": "maybe"})[0] == 102
    assert fake.prompts == []


def test_completion_without_session_creates_one(alice: RF, fake: FakeChatModel) -> None:
    a = alice.agent(opener="Meadow desk, how can I help?")
    # No body at all: a new session whose greeting is the answer (RAGFlow's default stream).
    r = alice.req("POST", f"/agents/{a['id']}/completions")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.content.endswith(FINAL), r.content
    assert json.loads(r.content.split(b"\n\n")[0][5:])["data"]["answer"] == (
        "Meadow desk, how can I help?"
    )
    # No question: the new session's greeting is the answer, and the model is not asked.
    st = alice.stream(f"/agents/{a['id']}/completions", {})
    greeting = st.content[0]
    assert {(c["answer"], c["session_id"]) for c in st.content} == {
        ("Meadow desk, how can I help?", greeting["session_id"])
    }
    assert st.raw.endswith(FINAL)
    assert fake.prompts == []
    listed = alice.sessions(a["id"], id=greeting["session_id"])
    assert [s["message"] for s in listed] == [
        [{"role": "assistant", "content": "Meadow desk, how can I help?"}]
    ]
    # With a question: a new session, answered at once; `user_id` is kept with it.
    out = alice.ask(a["id"], question="Hello?", user_id="walk-in")
    assert out["session_id"] != greeting["session_id"] and out["answer"] == REPLY
    [made] = alice.sessions(a["id"], id=out["session_id"])
    assert made["user_id"] == "walk-in"
    assert [m["role"] for m in made["message"]] == ["assistant", "user", "assistant"]


def test_completion_without_session_takes_begin_inputs(
    alice: RF, container: Container, fake: FakeChatModel
) -> None:
    a = alice.agent(prompt="Reply in {lang}.", params=LANG)
    path = f"/agents/{a['id']}/completions"
    assert alice.fail("POST", path, json={"question": "Hi?"}) == (102, "`lang` is required")
    assert alice.fail("POST", path, json={}) == (102, "`lang` is required")
    out = alice.ask(a["id"], question="Hi?", lang="Welsh")
    assert fake.prompts[-1][0].content == "Reply in Welsh."
    assert container.assistants.conversation("alice", a["id"], out["session_id"]).variables == {
        "lang": "Welsh"
    }
    # The session remembers: the next turn needs no input.
    alice.ask(a["id"], question="And now?", session_id=out["session_id"])
    assert fake.prompts[-1][0].content == "Reply in Welsh."
    # A greeting-only call with inputs keeps them too.
    st = alice.stream(path, {"lang": "Basque"})
    sid = st.content[0]["session_id"]
    alice.ask(a["id"], question="Hi?", session_id=sid)
    assert fake.prompts[-1][0].content == "Reply in Basque."


def test_input_is_the_retrieved_knowledge(alice: RF, ds: str, fake: FakeChatModel) -> None:
    a = alice.agent(
        dataset_ids=[ds],
        retrieval=FIND_ALL,
        prompt="Use these facts, in {lang}:\n{input}\nEnd of facts.",
        params=LANG,
    )
    out = alice.ask(a["id"], question="What colour is the Zorblax meadow grass?", lang="Dutch")
    [chunk] = out["reference"]["chunks"]
    assert "Zorblax meadow grass turns violet" in chunk["content"]
    system, user = fake.prompts[-1]
    assert (system.role, user.role, user.content) == (
        "system",
        "user",
        "What colour is the Zorblax meadow grass?",
    )
    assert system.content == (
        f"Use these facts, in Dutch:\nDocument: meadow.txt\n{chunk['content']}\nEnd of facts."
    )
    assert out["prompt"].startswith("system: Use these facts, in Dutch:\nDocument: meadow.txt\n")


def test_empty_retrieval_returns_empty_response_without_the_model(
    alice: RF, ds: str, fake: FakeChatModel
) -> None:
    a = alice.agent(
        dataset_ids=[ds],
        retrieval={"similarity_threshold": 0.99, "empty_response": "No meadow facts found."},
    )
    s = alice.session(a["id"])
    out = alice.ask(a["id"], question="Tell me about volcanoes on Mars.", session_id=s["id"])
    assert out["answer"] == "No meadow facts found."
    assert out["reference"]["chunks"] == []
    st = alice.stream(
        f"/agents/{a['id']}/completions",
        {"question": "And the moons of Jupiter?", "session_id": s["id"]},
    )
    assert [c["answer"] for c in st.content] == ["No meadow facts found."] * 2
    assert fake.prompts == []
    [listed] = alice.sessions(a["id"], id=s["id"])
    assert listed["message"][-1]["content"] == "No meadow facts found."


def test_empty_retrieval_without_empty_response_asks_the_model(
    alice: RF, ds: str, fake: FakeChatModel
) -> None:
    a = alice.agent(dataset_ids=[ds], retrieval={"similarity_threshold": 0.99}, prompt="K:{input}.")
    out = alice.ask(a["id"], question="Tell me about volcanoes on Mars.")
    assert out["answer"] == REPLY and out["reference"]["chunks"] == []
    assert fake.prompts[-1][0].content == "K:."


def test_second_turn_sees_the_history(alice: RF, ds: str, fake: FakeChatModel) -> None:
    a = alice.agent(dataset_ids=[ds], retrieval=FIND_ALL)
    s = alice.session(a["id"])
    fake.reply = "Violet, after the first frost."
    first = alice.ask(a["id"], question="What colour is Zorblax grass?", session_id=s["id"])
    fake.reply = REPLY
    alice.ask(a["id"], question="And when does that happen?", session_id=s["id"])
    prompt = fake.prompts[-1]
    assert [m.role for m in prompt] == ["system", "user", "assistant", "user"]
    assert prompt[1].content == "What colour is Zorblax grass?"
    # The earlier answer without its citation markers; the greeting is not history.
    assert (
        prompt[2].content == CITATION.sub("", first["answer"]) == "Violet, after the first frost."
    )
    assert prompt[3].content == "And when does that happen?"


def test_agent_without_retrieval_answers_from_the_model(alice: RF, fake: FakeChatModel) -> None:
    dsl = ragflow_dsl([], "You are a meadow poet.")
    comps = dsl["components"]
    del comps[R]
    comps["begin"]["downstream"] = [G]
    comps[G]["upstream"] = ["begin"]
    a = alice.agent(dsl=dsl)
    out = alice.ask(a["id"], question="Write a line about grass.")
    assert out["answer"] == REPLY
    assert out["reference"] == {"total": 0, "chunks": [], "doc_aggs": []}
    assert [(m.role, m.content) for m in fake.prompts[-1]] == [
        ("system", "You are a meadow poet."),
        ("user", "Write a line about grass."),
    ]


# ---------------------------------------------------------------------- isolation

ISO_QUESTION = {"question": "What are the secret plans?"}
# Every `/api/v1/agents` route with an id in the path, and the requests that pass validation so
# the lookup decides the answer. `{session}` in a body is a session id of the path's agent.
ID_ROUTES: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("DELETE", "/api/v1/agents/{agent_id}"): [{}],
    ("POST", "/api/v1/agents/{agent_id}/sessions"): [{"json": {}}, {"json": {"user_id": "u"}}],
    ("GET", "/api/v1/agents/{agent_id}/sessions"): [{}, {"params": {"id": "{session}"}}],
    ("POST", "/api/v1/agents/{agent_id}/completions"): [
        {"json": {**ISO_QUESTION, "stream": False}},
        {"json": {**ISO_QUESTION, "stream": True}},
        {"json": {**ISO_QUESTION, "session_id": "{session}", "stream": False}},
        {"json": {"stream": True}},
    ],
}


def agent_id_routes() -> list[tuple[str, str]]:
    paths = create_app(GROUPS).openapi()["paths"]
    return sorted(
        (m.upper(), p)
        for p, ops in paths.items()
        if p.startswith("/api/v1/agents") and "{" in p
        for m in ops
    )


def test_every_agent_route_with_an_id_is_covered() -> None:
    found = set(agent_id_routes())
    assert found, "no /api/v1/agents/{...} routes found"
    new = found - set(ID_ROUTES)
    assert not new, f"new agent routes with ids: describe them in ID_ROUTES: {sorted(new)}"
    assert set(ID_ROUTES) <= found, f"routes gone: {sorted(set(ID_ROUTES) - found)}"


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        for k, v in ids.items():
            value = value.replace("{" + k + "}", v)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


def _masked(body: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    text = json.dumps(body)
    for k, v in ids.items():
        text = text.replace(v, f"<{k}>")
    out: dict[str, Any] = json.loads(text)
    return out


@pytest.mark.parametrize(("method", "path"), sorted(ID_ROUTES))
def test_foreign_ids_answer_like_unknown_ids(
    alice: RF, bob: RF, container: Container, ds: str, fake: FakeChatModel, method: str, path: str
) -> None:
    a = alice.agent(dataset_ids=[ds], retrieval=FIND_ALL, title=uniq("secret"))
    s = alice.session(a["id"])
    alice.ask(a["id"], question="Where is the treasure?", session_id=s["id"])
    before = container.assistants.conversations("alice", a["id"])
    prompts = len(fake.prompts)
    for variant in ID_ROUTES[(method, path)]:
        answers = []
        for ids in (
            {"agent_id": a["id"], "session": s["id"]},
            {"agent_id": unknown_id(), "session": unknown_id()},
        ):
            url = path.replace("{agent_id}", ids["agent_id"]).removeprefix(API)
            r = bob.req(method, url, **_fill(variant, ids))
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].startswith("application/json"), r.headers
            body = r.json()
            assert body["code"] != 0 and "data" not in body, body
            answers.append(_masked(body, ids))
        assert answers[0] == answers[1], (variant, answers)
        assert answers[0] == {"code": 102, "message": "You don't own the agent <agent_id>."}
    # Alice's agent and sessions are untouched; the model never ran for Bob.
    assert alice.agents(id=a["id"]) == [a]
    assert container.assistants.conversations("alice", a["id"]) == before
    assert len(fake.prompts) == prompts


def test_foreign_ids_in_bodies_and_filters_answer_like_unknown_ids(
    alice: RF, bob: RF, ds: str, fake: FakeChatModel
) -> None:
    a = alice.agent(dataset_ids=[ds], retrieval=FIND_ALL, title=uniq("secret"))
    s = alice.session(a["id"])
    mine = bob.agent()
    ghost_agent, ghost_session = unknown_id(), unknown_id()
    # Alice's session id on Bob's own agent.
    for sid in (s["id"], ghost_session):
        assert bob.fail(
            "POST", f"/agents/{mine['id']}/completions", json={**ISO_QUESTION, "session_id": sid}
        ) == (102, f"The session {sid} doesn't exist")
        assert bob.sessions(mine["id"], id=sid) == []
    # Alice's agent id and title as list filters.
    for aid in (a["id"], ghost_agent):
        assert bob.fail("GET", "/agents", params={"id": aid}) == (102, "The agent doesn't exist.")
    for title in (a["title"], uniq("secret")):
        assert bob.fail("GET", "/agents", params={"name": title}) == (
            102,
            "The agent doesn't exist.",
        )
    assert fake.prompts == []


def test_lists_never_show_another_tenants_agents(alice: RF, bob: RF) -> None:
    a = alice.agent(title=uniq("alices"))
    b = bob.agent(title=uniq("bobs"))
    bobs = bob.agents(page_size=1000)
    alices = alice.agents(page_size=1000)
    assert b["id"] in {x["id"] for x in bobs} and a["id"] in {x["id"] for x in alices}
    assert not {x["id"] for x in bobs} & {x["id"] for x in alices}
    assert {x["user_id"] for x in bobs} == {"bob"}
    assert {x["user_id"] for x in alices} == {"alice"}


# ---------------------------------------------------------------------- real model


@pytest.fixture(scope="module")
def real(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, api_keys: dict[str, str]
) -> Iterator[RF]:
    s = keyed_settings(tmp_path_factory.mktemp("agents-real"), model_cache, api_keys)
    with TestClient(create_app(settings=s), raise_server_exceptions=False) as c:
        yield RF(c, api_keys["alice"])


@pytest.mark.slow
def test_embedded_default_model_end_to_end(real: RF) -> None:
    ds_id = real.parsed_dataset({"meadow.txt": MEADOW})
    a = real.agent(
        dataset_ids=[ds_id],
        retrieval=FIND_ALL,
        llm={"temperature": 0.0, "max_tokens": 8},
        prompt="Answer in {lang} using these facts:\n{input}",
        params=LANG,
    )
    s = real.session(a["id"], lang="English")
    st = real.stream(
        f"/agents/{a['id']}/completions",
        {"question": "What colour does Zorblax meadow grass turn?", "session_id": s["id"]},
    )
    assert st.raw.endswith(FINAL)
    payloads = st.payloads
    assert all(p["code"] == 0 and p["message"] == "" for p in payloads), payloads
    content = st.content
    assert len(content) >= 2
    answers = [c["answer"] for c in content[:-1]]
    assert all(answers[i + 1].startswith(answers[i]) for i in range(len(answers) - 1)), answers
    last = content[-1]
    assert CITATION.sub("", last["answer"]).strip()
    assert last["reference"]["chunks"][0]["document_name"] == "meadow.txt"
    assert "Answer in English using these facts:\nDocument: meadow.txt" in last["prompt"]
    [listed] = real.sessions(a["id"], id=s["id"])
    assert [m["role"] for m in listed["message"]] == ["assistant", "user", "assistant"]
