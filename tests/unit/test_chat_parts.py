"""Pieces of chat that need no model: stop strings, prompts, model choice, model factory."""

from __future__ import annotations

from pathlib import Path

import pytest

from pasture.adapters.local.llamacpp_chat import _StopMatcher
from pasture.bootstrap import chat_model_factory
from pasture.config import Settings
from pasture.domain.chat import ChatMessage
from pasture.domain.errors import Invalid
from pasture.domain.projects import ModelConfig, ProjectConfig
from pasture.services.chat import _fit, _project_system_prompt
from pasture.services.models import SERVER_DEFAULT, ModelCatalog
from tests.helpers.fakes import FakeChatModel


def feed_all(stops: list[str], pieces: list[str]) -> tuple[str, bool]:
    m = _StopMatcher(stops)
    out = []
    for p in pieces:
        text, hit = m.feed(p)
        out.append(text)
        if hit:
            return "".join(out), True
    return "".join(out) + m.flush(), False


@pytest.mark.parametrize(
    ("stops", "pieces", "expected"),
    [
        ([], ["a", "b"], ("ab", False)),
        (["END"], ["hello E", "N", "D more"], ("hello ", True)),  # across three tokens
        (["END"], ["hello E", "N", "x"], ("hello ENx", False)),  # a false start is released
        (["\n\n", "STOP"], ["one\n", "\ntwo"], ("one", True)),
        (["ab"], ["xa"], ("xa", False)),  # held back, then flushed at the end
        (["abc", "bd"], ["a", "b", "d"], ("a", True)),  # the earliest stop string wins
    ],
)
def test_stop_matcher(stops: list[str], pieces: list[str], expected: tuple[str, bool]) -> None:
    assert feed_all(stops, pieces) == expected


def test_stop_matcher_never_releases_part_of_a_stop_string() -> None:
    m = _StopMatcher(["</answer>"])
    released = [m.feed(p)[0] for p in ["The answer", " is 4</", "ans"]]
    assert "".join(released) == "The answer is 4"


def _cfg(**runtime: object) -> ProjectConfig:
    return ProjectConfig.model_validate({"name": "p", "namespace": "n", "runtime": runtime})


def test_project_system_prompt_reads_both_llamafarm_forms() -> None:
    flat = ProjectConfig.model_validate(
        {"name": "p", "namespace": "n", "prompts": [{"role": "system", "content": "A"}]}
    )
    named = ProjectConfig.model_validate(
        {
            "name": "p",
            "namespace": "n",
            "prompts": [
                {"name": "x", "messages": [{"role": "system", "content": "B"}]},
                {"role": "user", "content": "ignored"},
            ],
        }
    )
    assert _project_system_prompt(flat) == "A"
    assert _project_system_prompt(named) == "B"


def test_model_choice_default_model_then_flag_then_first() -> None:
    a = {"name": "a", "provider": "llamacpp"}
    b = {"name": "b", "provider": "llamacpp", "default": True}
    assert [m.name for m in ModelCatalog.configured(_cfg()) if m.default] == ["default"]
    assert [m.name for m in ModelCatalog.configured(_cfg(models=[a, b])) if m.default] == ["b"]
    assert [
        m.name for m in ModelCatalog.configured(_cfg(models=[a, b], default_model="a")) if m.default
    ] == ["a"]
    assert [m.name for m in ModelCatalog.configured(_cfg(models=[a])) if m.default] == ["a"]


def test_catalog_loads_each_model_once() -> None:
    built: list[str] = []

    def factory(mc: ModelConfig):  # type: ignore[no-untyped-def]
        def build() -> FakeChatModel:
            built.append(mc.name)
            return FakeChatModel(mc.name)

        return ("k", mc.model), build

    cat = ModelCatalog(factory)
    cfg = _cfg(models=[{"name": "a", "model": "m"}, {"name": "b", "model": "m"}])
    first = cat.resolve(cfg, "a")[1]
    assert cat.resolve(cfg, "b")[1] is first and built == ["a"]
    with pytest.raises(Invalid, match="available: a, b"):
        cat.resolve(cfg, "c")


def test_factory_never_lets_a_project_name_a_server_path(tmp_path: Path) -> None:
    models = tmp_path / "gguf"
    models.mkdir()
    (models / "tiny.gguf").write_bytes(b"GGUF")
    (tmp_path / "secret.gguf").write_bytes(b"GGUF")
    factory = chat_model_factory(Settings(data_dir=tmp_path, chat_models_dir=models))
    key, _ = factory(ModelConfig(name="t", provider="llamacpp", model="tiny"))
    assert key == ("llamacpp", str(models / "tiny.gguf"))
    for bad in ("../secret", "/etc/passwd", ".hidden", "missing"):
        with pytest.raises(Invalid, match="not installed"):
            factory(ModelConfig(name="t", provider="llamacpp", model=bad))
    with pytest.raises(Invalid, match="provider 'tgi' is not supported"):
        factory(ModelConfig(name="t", provider="tgi", model="x"))
    with pytest.raises(Invalid, match="needs a base_url"):
        factory(ModelConfig(name="t", provider="ollama", model="x"))
    key, _ = factory(
        ModelConfig(name="t", provider="ollama", model="x", base_url="http://127.0.0.1:1/v1")
    )
    assert key[0] == "remote"
    assert factory(SERVER_DEFAULT)[0][0] == "llamacpp"


def test_fit_keeps_sources_before_history_and_drops_weak_sources_last() -> None:
    from pasture.domain.search import SearchHit

    model = FakeChatModel(context_length=120)
    hits = [
        SearchHit(f"c{i}", "d", "doc", "word " * 20, {"filename": f"f{i}.txt"}, 1.0, 0.5, 0.5)
        for i in range(4)
    ]
    history = [ChatMessage("user", "old " * 5), ChatMessage("assistant", "reply " * 5)]
    prompt, kept, room = _fit(
        model, "sys", history, [ChatMessage("user", "question")], hits, max_tokens=10
    )
    assert model.count_tokens(prompt) <= 120 - 10 and room == 120 - model.count_tokens(prompt)
    assert 0 < len(kept) < 4 and kept == hits[: len(kept)]  # the best ones stay
    assert prompt[-1].content.endswith("Question: question")
    with pytest.raises(Invalid, match="no room for an answer"):
        _fit(model, "sys", [], [ChatMessage("user", "w " * 200)], [], max_tokens=10)
