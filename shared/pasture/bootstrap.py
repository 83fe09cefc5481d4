"""The one composition root: settings -> adapters -> services, built once per process."""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pasture.config import Settings
from pasture.domain.documents import ChunkingSpec
from pasture.domain.errors import Invalid, Unavailable
from pasture.domain.projects import ModelConfig
from pasture.ports import (
    BlobStore,
    ChatModel,
    Embedder,
    ItemHandler,
    Records,
    SearchIndex,
    Tokenizer,
    Workflow,
)
from pasture.services.accounts import AccountService
from pasture.services.agents import AgentService
from pasture.services.assistants import AssistantService
from pasture.services.chat import ChatService
from pasture.services.chatbot import ChatbotService
from pasture.services.chunks import ChunkService
from pasture.services.consumer_keys import ConsumerKeyService
from pasture.services.conversations import ConversationService
from pasture.services.dataset_search import DatasetSearchService
from pasture.services.datasets import DatasetService
from pasture.services.ingestion import INGEST, IngestionService
from pasture.services.models import SERVER_DEFAULT, ModelCatalog, ModelFactory
from pasture.services.projects import ProjectService
from pasture.services.retrieval import RetrievalService
from pasture.services.tenancy import Authenticator
from pasture.services.tenant_datasets import TenantDatasets
from pasture.services.transcription import TranscriptionService

log = logging.getLogger(__name__)


@dataclass
class Container:
    settings: Settings
    records: Records
    blobs: BlobStore
    index: SearchIndex
    embedder: Embedder
    tokenizer: Tokenizer
    workflow: Workflow
    authenticator: Authenticator
    projects: ProjectService
    datasets: DatasetService
    ingestion: IngestionService
    tenant_datasets: TenantDatasets
    chunks: ChunkService
    dataset_search: DatasetSearchService
    assistants: AssistantService
    agents: AgentService
    retrieval: RetrievalService
    chat: ChatService
    accounts: AccountService
    consumer_keys: ConsumerKeyService
    catalog: ModelCatalog
    conversations: ConversationService  # LlamaChat
    chatbot: ChatbotService  # llama_internet_chatbot
    transcription: TranscriptionService
    _closers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self._closers):
            try:
                close()
            except Exception:  # closing is best effort; keep closing the rest
                log.exception("error while closing")


def build_container(settings: Settings, *, chat_factory: ModelFactory | None = None) -> Container:
    """`chat_factory` replaces how chat models are built (tests bring fakes)."""
    if settings.backend != "local":
        raise Unavailable("the aws backend is not available in this build yet")
    return _build_local(settings, chat_factory or chat_model_factory(settings))


# Providers served by OpenAICompatibleChatModel: anything that speaks /v1/chat/completions.
REMOTE_PROVIDERS = frozenset(
    {
        "openai",
        "openai-compatible",
        "openai_compatible",
        "ollama",
        "vllm",
        "llamacpp-server",
        "llama.cpp-server",
        "lemonade",
        "lmstudio",
    }
)
LOCAL_PROVIDERS = frozenset({"llamacpp", "llama.cpp", "llama-cpp", "local"})


def chat_model_factory(settings: Settings) -> ModelFactory:
    """Model config -> (cache key, builder). Local models are only ever files the server's
    operator put in place (the packaged default, PASTURE_CHAT_MODEL_PATH, or a .gguf in the
    models directory): a tenant's project config never names a path on the server."""

    def factory(mc: ModelConfig) -> tuple[Hashable, Callable[[], ChatModel]]:
        provider = mc.provider.lower()
        if provider in LOCAL_PROVIDERS:
            path = _local_model_path(settings, mc.model)

            def build_local() -> ChatModel:
                from pasture.adapters.local.llamacpp_chat import LlamaCppChatModel

                return LlamaCppChatModel(
                    path,
                    name=mc.model or path.stem,
                    context_length=settings.chat_context_length,
                    threads=settings.chat_threads,
                )

            return ("llamacpp", str(path)), build_local
        if provider in REMOTE_PROVIDERS:
            if not mc.base_url:
                raise Invalid(f"model {mc.name!r} (provider {mc.provider}) needs a base_url")
            extra = mc.model_extra or {}
            api_key = extra.get("api_key")
            ctx = int(extra.get("context_length") or 4096)
            base_url = mc.base_url

            def build_remote() -> ChatModel:
                from pasture.adapters.remote.openai_chat import OpenAICompatibleChatModel

                return OpenAICompatibleChatModel(
                    base_url,
                    mc.model,
                    api_key=api_key,
                    name=mc.model,
                    context_length=ctx,
                    connect_timeout=settings.remote_connect_timeout,
                    read_timeout=settings.remote_read_timeout,
                )

            return ("remote", base_url, mc.model, api_key, ctx), build_remote
        raise Invalid(
            f"model {mc.name!r}: provider {mc.provider!r} is not supported (use one of:"
            f" {', '.join(sorted(LOCAL_PROVIDERS | REMOTE_PROVIDERS))})"
        )

    return factory


def _local_model_path(settings: Settings, model: str) -> Path:
    from pasture.adapters.local.model_files import smollm2_gguf

    if model in ("", "default", SERVER_DEFAULT.model):
        return settings.chat_model_path or smollm2_gguf()
    models_dir = settings.chat_models_dir or settings.data_dir / "models" / "gguf"
    name = model.removesuffix(".gguf")
    candidate = models_dir / f"{name}.gguf"
    if "/" in name or "\\" in name or name.startswith(".") or not candidate.is_file():
        available = sorted(p.stem for p in models_dir.glob("*.gguf")) if models_dir.is_dir() else []
        raise Invalid(
            f"local model {model!r} is not installed (available: {SERVER_DEFAULT.model}"
            + "".join(f", {a}" for a in available)
            + f"; put more .gguf files in {models_dir.name}/ of the models directory)"
        )
    return candidate


def _build_local(settings: Settings, chat_factory: ModelFactory) -> Container:
    from pasture.adapters.local.file_blob_store import FileBlobStore
    from pasture.adapters.local.hf_tokenizer import HuggingFaceTokenizer
    from pasture.adapters.local.model_files import minilm_dir
    from pasture.adapters.local.onnx_embedder import OnnxEmbedder
    from pasture.adapters.local.sqlite_db import SqliteDb
    from pasture.adapters.local.sqlite_records import SqliteRecords
    from pasture.adapters.local.sqlite_search_index import SqliteSearchIndex
    from pasture.adapters.local.thread_workflow import ThreadWorkflow

    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    db = SqliteDb(data / "pasture.db")
    records = SqliteRecords(db)
    blobs = FileBlobStore(data / "blobs")
    index = SqliteSearchIndex(data / "index.db", data / "vectors")
    model_dir = minilm_dir()
    embedder = OnnxEmbedder(
        model_dir,
        settings.model_cache_dir or data / "models",
        batch_size=settings.embed_batch_size,
        threads=settings.embed_threads,
    )
    tokenizer = HuggingFaceTokenizer(model_dir / "tokenizer.json")
    handlers: dict[str, ItemHandler] = {}
    workflow = ThreadWorkflow(
        db, handlers, workers=settings.ingest_workers, batch_items=settings.ingest_batch_items
    )
    projects = ProjectService(records)
    datasets = DatasetService(
        records, blobs, index, projects, max_upload_bytes=settings.max_upload_bytes
    )
    ingestion = IngestionService(
        records,
        blobs,
        index,
        embedder,
        tokenizer,
        workflow,
        projects,
        datasets,
        default_chunking=ChunkingSpec(settings.default_chunk_size, settings.default_chunk_overlap),
    )
    handlers[INGEST] = ingestion.handle
    tenant_datasets = TenantDatasets(datasets, ingestion, embedder.name)
    chunks = ChunkService(index, embedder, tokenizer, datasets, tenant_datasets)
    retrieval = RetrievalService(
        index,
        embedder,
        projects,
        datasets,
        vector_weight=settings.hybrid_vector_weight,
        candidates=settings.retrieval_candidates,
    )
    catalog = ModelCatalog(chat_factory)
    dataset_search = DatasetSearchService(
        index, embedder, datasets, lambda: catalog.load(SERVER_DEFAULT)
    )
    chat = ChatService(
        records,
        projects,
        retrieval,
        catalog,
        default_max_tokens=settings.chat_max_tokens,
        session_ttl=settings.chat_session_ttl_seconds,
        session_max_messages=settings.chat_session_max_messages,
    )
    assistants = AssistantService(records, datasets, dataset_search, embedder, catalog)
    agents = AgentService(records, assistants)
    accounts = AccountService(records, session_ttl=settings.ragflow_session_ttl_seconds)
    consumer_keys = ConsumerKeyService(records)
    default_model = lambda: catalog.load(SERVER_DEFAULT)  # noqa: E731
    conversations = _build_conversations(settings, records, default_model)
    chatbot = _build_chatbot(settings, records, embedder, default_model)
    transcription = _build_transcription(settings)
    if settings.chat_preload:
        catalog.load(SERVER_DEFAULT)
    container = Container(
        settings=settings,
        records=records,
        blobs=blobs,
        index=index,
        embedder=embedder,
        tokenizer=tokenizer,
        workflow=workflow,
        authenticator=Authenticator(
            settings.consumer_keys(),
            open_tenant=settings.open_tenant,
            lookup=lambda digest: (
                consumer_keys.tenant_for_key(digest)
                # Keys minted by RAGFlow accounts count only while accounts are enabled.
                or (accounts.tenant_for_key(digest) if settings.accounts_enabled else None)
            ),
            stored_keys=consumer_keys.any(),
        ),
        projects=projects,
        datasets=datasets,
        ingestion=ingestion,
        tenant_datasets=tenant_datasets,
        chunks=chunks,
        dataset_search=dataset_search,
        assistants=assistants,
        agents=agents,
        retrieval=retrieval,
        chat=chat,
        accounts=accounts,
        consumer_keys=consumer_keys,
        catalog=catalog,
        conversations=conversations,
        chatbot=chatbot,
        transcription=transcription,
    )
    workflow.start_workers()
    container._closers += [db.close, index.close, workflow.stop, lambda: _close_models(catalog)]
    return container


# --------------------------------------------------------------------- LlamaChat


def _build_conversations(
    settings: Settings, records: Records, default_model: Callable[[], ChatModel]
) -> ConversationService:
    return ConversationService(
        records,
        default_model,
        max_content=settings.llamachat_max_content,
        max_tokens=settings.chat_max_tokens,
    )


# --------------------------------------------------------------------- internet chatbot


def _build_chatbot(
    settings: Settings,
    records: Records,
    embedder: Embedder,
    default_model: Callable[[], ChatModel],
) -> ChatbotService:
    from pasture.adapters.remote.web_fetch import HttpPageFetcher, parse_networks
    from pasture.adapters.remote.web_search import DuckDuckGoWebSearch, SearxngWebSearch
    from pasture.ports import WebSearch

    search: WebSearch
    if settings.web_search == "searxng":
        if not settings.searxng_url:
            raise Invalid("PASTURE_WEB_SEARCH=searxng needs PASTURE_SEARXNG_URL")
        search = SearxngWebSearch(settings.searxng_url, timeout=settings.web_search_timeout)
    else:
        search = DuckDuckGoWebSearch(settings.duckduckgo_url, timeout=settings.web_search_timeout)
    fetcher = HttpPageFetcher(
        timeout=settings.web_fetch_timeout,
        max_bytes=settings.web_fetch_max_bytes,
        allow_private=settings.web_fetch_allow_private,
        allow_networks=parse_networks(settings.web_fetch_allow_networks),
    )
    return ChatbotService(
        records,
        default_model,
        search=search,
        fetcher=fetcher,
        embedder=embedder,
        max_tokens=settings.chat_max_tokens,
        fetch_pages=settings.web_fetch_pages,
        passages=settings.web_passages,
        fetch_timeout=settings.web_fetch_timeout,
    )


# --------------------------------------------------------------------- transcription


def _build_transcription(settings: Settings) -> TranscriptionService:
    """PASTURE_TRANSCRIBER: `local` (faster-whisper in process), `whispercpp` or `openai`
    (a server at PASTURE_TRANSCRIBER_URL). The transcriber is built on first use unless
    PASTURE_WHISPER_PRELOAD; a wrong setting fails at startup."""
    from typing import IO

    from pasture.domain.speech import AudioClip
    from pasture.ports import Transcriber

    kind = settings.transcriber
    url = settings.transcriber_url
    connect, read = settings.remote_connect_timeout, settings.remote_read_timeout
    if kind in ("whispercpp", "openai") and not url:
        raise Invalid(
            f"PASTURE_TRANSCRIBER={kind} needs PASTURE_TRANSCRIBER_URL, the base URL of the"
            " transcription server (e.g. http://127.0.0.1:8080)"
        )
    model_dir = settings.whisper_model_dir
    if kind == "local" and model_dir is not None and not (model_dir / "model.bin").is_file():
        raise Invalid(
            f"PASTURE_WHISPER_MODEL_DIR={model_dir} is not a CTranslate2 whisper model"
            " directory (no model.bin)"
        )

    def build() -> Transcriber:
        if kind == "whispercpp":
            from pasture.adapters.remote.whisper_transcriber import WhisperCppTranscriber

            assert url is not None
            return WhisperCppTranscriber(url, connect_timeout=connect, read_timeout=read)
        if kind == "openai":
            from pasture.adapters.remote.whisper_transcriber import OpenAITranscriber

            assert url is not None
            return OpenAITranscriber(
                url,
                model=settings.transcriber_model,
                api_key=settings.transcriber_api_key,
                connect_timeout=connect,
                read_timeout=read,
            )
        from pasture.adapters.local.faster_whisper_transcriber import FasterWhisperTranscriber
        from pasture.adapters.local.model_files import whisper_tiny_en_dir

        return FasterWhisperTranscriber(
            model_dir or whisper_tiny_en_dir(),
            compute_type=settings.whisper_compute_type,
            threads=settings.whisper_threads,
            beam_size=settings.whisper_beam_size,
            preload=settings.whisper_preload,
        )

    def decode(audio: IO[bytes]) -> AudioClip:
        from pasture.adapters.local.pyav_audio import decode_audio

        return decode_audio(audio, max_seconds=settings.max_audio_seconds)

    service = TranscriptionService(decode, build, max_audio_bytes=settings.max_audio_bytes)
    if settings.whisper_preload:
        service.transcriber()
    return service


def _close_models(catalog: ModelCatalog) -> None:
    for m in catalog.loaded():
        close = getattr(m, "close", None)
        if close is not None:
            close()
