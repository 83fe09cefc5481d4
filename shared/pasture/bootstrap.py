"""The one composition root: settings -> adapters -> services, built once per process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from pasture.config import Settings
from pasture.domain.documents import ChunkingSpec
from pasture.domain.errors import Invalid, Unavailable
from pasture.domain.projects import ModelConfig
from pasture.ports import (
    ApiKeyGateway,
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
from pasture.services.consumer_keys import ConsumerKeyService, NoApiKeyGateway
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
T = TypeVar("T")

# The embedding model both backends use by default (all-MiniLM-L6-v2): what services read
# before any model is loaded. The SageMaker endpoint serves the same model.
EMBED_NAME = "all-MiniLM-L6-v2"
EMBED_DIMENSION = 384


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
    # Workflow item handlers by kind: run by the local worker threads, and on AWS by the
    # ingest Lambda that the state machine's tasks invoke.
    handlers: dict[str, ItemHandler] = field(default_factory=dict)
    _closers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for close in reversed(self._closers):
            try:
                close()
            except Exception:  # closing is best effort; keep closing the rest
                log.exception("error while closing")


def build_container(
    settings: Settings,
    *,
    chat_factory: ModelFactory | None = None,
    aws: AwsClients | None = None,
) -> Container:
    """`chat_factory` replaces how chat models are built (tests bring fakes); `aws` brings
    the AWS clients (tests bring moto-backed or fake ones; otherwise made from settings)."""
    if settings.backend == "aws":
        return _build_aws(
            settings, chat_factory or aws_chat_model_factory(settings), aws or AwsClients()
        )
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
    consumer_keys = ConsumerKeyService(records)
    container = _assemble(
        settings,
        chat_factory,
        records=records,
        blobs=blobs,
        index=index,
        embedder=embedder,
        tokenizer=tokenizer,
        workflow=workflow,
        handlers=handlers,
        transcription=_build_transcription(settings),
        api_keys=NoApiKeyGateway(),  # the local server checks keys itself
        # Open mode (no key anywhere) only exists locally, and is decided once, at startup.
        stored_keys=consumer_keys.any(),
    )
    if settings.chat_preload:
        container.catalog.load(SERVER_DEFAULT)
    workflow.start_workers()
    container._closers += [
        db.close,
        index.close,
        workflow.stop,
        lambda: _close_models(container.catalog),
    ]
    return container


def _assemble(
    settings: Settings,
    chat_factory: ModelFactory,
    *,
    records: Records,
    blobs: BlobStore,
    index: SearchIndex,
    embedder: Embedder,
    tokenizer: Tokenizer,
    workflow: Workflow,
    handlers: dict[str, ItemHandler],
    transcription: TranscriptionService,
    api_keys: ApiKeyGateway,
    stored_keys: bool,
) -> Container:
    """Services over the adapters of either backend: one wiring, so both runtimes serve the
    same behaviour. Registers the workflow item handlers in `handlers`."""
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
    accounts = AccountService(
        records, session_ttl=settings.ragflow_session_ttl_seconds, api_keys=api_keys
    )
    consumer_keys = ConsumerKeyService(records, api_keys)
    default_model = lambda: catalog.load(SERVER_DEFAULT)  # noqa: E731
    return Container(
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
            stored_keys=stored_keys,
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
        conversations=_build_conversations(settings, records, default_model),
        chatbot=_build_chatbot(settings, records, embedder, default_model),
        transcription=transcription,
        handlers=handlers,
    )


# --------------------------------------------------------------------- AWS


class _Lazy:
    """Stands in for a port whose adapter is built on first use, so a Lambda builds (and
    imports: opensearch-py, onnxruntime, ...) only what its requests touch. `known` answers
    the attribute reads that services make at wiring time without building anything."""

    def __init__(self, build: Callable[[], Any], **known: Any) -> None:
        self._build = build
        self._known = known
        self._target: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        if self._target is None:
            with self._lock:
                if self._target is None:
                    self._target = self._build()
        return self._target

    def __getattr__(self, name: str) -> Any:
        if name in self._known:
            return self._known[name]
        return getattr(self._get(), name)


def lazy(port: type[T], build: Callable[[], T], **known: Any) -> T:
    """A `port` built by `build` on first use (typed as the port for the services)."""
    return cast(T, _Lazy(build, **known))


class AwsClients:
    """The AWS clients of one process, each made on first use from the settings (region
    from PASTURE_AWS_REGION, else the Lambda's AWS_REGION). Tests pass ready ones."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        s3: Any = None,
        dynamodb: Any = None,
        stepfunctions: Any = None,
        sagemaker_runtime: Any = None,
        opensearch: Any = None,
        apigateway: Any = None,
    ) -> None:
        self._settings = settings
        self._made: dict[str, Any] = {
            k: v
            for k, v in {
                "s3": s3,
                "dynamodb": dynamodb,
                "stepfunctions": stepfunctions,
                "sagemaker-runtime": sagemaker_runtime,
                "opensearch": opensearch,
                "apigateway": apigateway,
            }.items()
            if v is not None
        }
        self._lock = threading.Lock()

    def bind(self, settings: Settings) -> AwsClients:
        if self._settings is None:
            self._settings = settings
        return self

    def _client(self, service: str) -> Any:
        with self._lock:
            if service not in self._made:
                import boto3
                from botocore.config import Config

                region = self._settings.aws_region if self._settings else None
                self._made[service] = boto3.client(
                    service,
                    region_name=region,
                    # Standard retry mode: backoff with jitter on throttling, bounded.
                    config=Config(retries={"mode": "standard", "max_attempts": 4}),
                )
            return self._made[service]

    def s3(self) -> Any:
        return self._client("s3")

    def dynamodb(self) -> Any:
        return self._client("dynamodb")

    def stepfunctions(self) -> Any:
        return self._client("stepfunctions")

    def sagemaker_runtime(self) -> Any:
        return self._client("sagemaker-runtime")

    def apigateway(self) -> Any:
        return self._client("apigateway")

    def opensearch(self) -> Any:
        with self._lock:
            if "opensearch" not in self._made:
                from pasture.adapters.aws.opensearch_search_index import opensearch_client

                s = self._settings or Settings()
                if not s.opensearch_endpoint:
                    raise Unavailable("PASTURE_OPENSEARCH_ENDPOINT is not set")
                self._made["opensearch"] = opensearch_client(
                    s.opensearch_endpoint,
                    region=s.aws_region,
                    auth=s.opensearch_auth,
                    timeout=s.opensearch_timeout,
                )
            return self._made["opensearch"]


def _required(settings: Settings, name: str) -> str:
    value = getattr(settings, name)
    if not value:
        raise Unavailable(f"PASTURE_{name.upper()} is not set (needed by the aws backend)")
    return str(value)


def aws_chat_model_factory(settings: Settings, aws: AwsClients | None = None) -> ModelFactory:
    """On AWS the server's default model (and any project model naming a local provider: no
    GGUF runs in a Lambda) is the SageMaker endpoint, else PASTURE_CHAT_URL (any
    OpenAI-compatible server). Remote providers work as they do locally."""
    remote = chat_model_factory(settings)
    clients = (aws or AwsClients()).bind(settings)

    def factory(mc: ModelConfig) -> tuple[Hashable, Callable[[], ChatModel]]:
        if mc.provider.lower() not in LOCAL_PROVIDERS:
            return remote(mc)
        endpoint, url = settings.sagemaker_endpoint, settings.chat_url
        if endpoint:

            def build_sagemaker() -> ChatModel:
                from pasture.adapters.aws.sagemaker_chat import SageMakerChatModel

                return SageMakerChatModel(
                    clients.sagemaker_runtime(),
                    endpoint,
                    name=settings.chat_model_name,
                    context_length=settings.chat_context_length,
                )

            return ("sagemaker", endpoint), build_sagemaker
        if url:

            def build_url() -> ChatModel:
                from pasture.adapters.remote.openai_chat import OpenAICompatibleChatModel

                return OpenAICompatibleChatModel(
                    url,
                    settings.chat_model_name,
                    api_key=settings.chat_api_key,
                    name=settings.chat_model_name,
                    context_length=settings.chat_context_length,
                    connect_timeout=settings.remote_connect_timeout,
                    read_timeout=settings.remote_read_timeout,
                )

            return ("url", url), build_url
        raise Unavailable(
            "no chat model is configured: set PASTURE_SAGEMAKER_ENDPOINT (the GPU endpoint) or"
            " PASTURE_CHAT_URL (an OpenAI-compatible server)"
        )

    return factory


def _build_aws(settings: Settings, chat_factory: ModelFactory, aws: AwsClients) -> Container:
    """Every adapter is lazy: a Lambda serving one group builds only the ports it uses."""
    clients = aws.bind(settings)

    def records() -> Records:
        from pasture.adapters.aws.dynamodb_records import DynamoDBRecords

        return DynamoDBRecords(clients.dynamodb(), _required(settings, "table"))

    def blobs() -> BlobStore:
        from pasture.adapters.aws.s3_blob_store import S3BlobStore

        return S3BlobStore(
            clients.s3(), _required(settings, "bucket"), kms_key_id=settings.kms_key_id
        )

    def index() -> SearchIndex:
        from pasture.adapters.aws.opensearch_search_index import OpenSearchSearchIndex

        return OpenSearchSearchIndex(
            clients.opensearch(), settings.opensearch_index, dimension=EMBED_DIMENSION
        )

    def embedder() -> Embedder:
        if settings.embedder == "sagemaker":
            from pasture.adapters.aws.sagemaker_embedder import SageMakerEmbedder

            return SageMakerEmbedder(
                clients.sagemaker_runtime(), _required(settings, "sagemaker_endpoint")
            )
        from pasture.adapters.local.model_files import minilm_dir
        from pasture.adapters.local.onnx_embedder import OnnxEmbedder

        return OnnxEmbedder(
            # The model layer's prebuilt graph (PASTURE_EMBED_MODEL_DIR), else the packaged
            # weights with the graph built on first use.
            settings.embed_model_dir or minilm_dir(),
            # /tmp: a Lambda's only writable directory.
            settings.model_cache_dir or Path("/tmp/pasture-models"),
            batch_size=settings.embed_batch_size,
            threads=settings.embed_threads,
        )

    def tokenizer() -> Tokenizer:
        from pasture.adapters.local.hf_tokenizer import HuggingFaceTokenizer
        from pasture.adapters.local.model_files import minilm_dir

        return HuggingFaceTokenizer((settings.embed_model_dir or minilm_dir()) / "tokenizer.json")

    def api_keys() -> ApiKeyGateway:
        from pasture.adapters.aws.apigateway_keys import ApiGatewayApiKeys

        # Without PASTURE_USAGE_PLAN_ID, making a key fails (it says so); listing and
        # revoking work.
        return ApiGatewayApiKeys(
            clients.apigateway(), settings.usage_plan_id, plan_name=settings.usage_plan_name
        )

    the_records = lazy(Records, records)  # type: ignore[type-abstract]

    def workflow() -> Workflow:
        from pasture.adapters.aws.stepfunctions_workflow import StepFunctionsWorkflow

        return StepFunctionsWorkflow(
            clients.stepfunctions(), the_records, _required(settings, "state_machine_arn")
        )

    return _assemble(
        settings,
        chat_factory,
        records=the_records,
        blobs=lazy(BlobStore, blobs),  # type: ignore[type-abstract]
        index=lazy(SearchIndex, index),  # type: ignore[type-abstract]
        embedder=lazy(Embedder, embedder, name=EMBED_NAME, dimension=EMBED_DIMENSION),  # type: ignore[type-abstract]
        tokenizer=lazy(Tokenizer, tokenizer),  # type: ignore[type-abstract]
        workflow=lazy(Workflow, workflow),  # type: ignore[type-abstract]
        handlers={},
        transcription=_build_transcription(settings, clients),
        # Key source AUTHORIZER: every consumer key is also an API key in the usage plan.
        api_keys=lazy(ApiKeyGateway, api_keys),  # type: ignore[type-abstract]
        # Never open on AWS: API Gateway requires a key, and the authorizer maps it.
        stored_keys=True,
    )


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
    """The search engine and the page fetcher (httpx) are built on first use: every Lambda
    wires this service, only the chat group's web answers use them."""
    from pasture.ports import PageFetcher, WebSearch

    if settings.web_search == "searxng" and not settings.searxng_url:
        raise Invalid("PASTURE_WEB_SEARCH=searxng needs PASTURE_SEARXNG_URL")

    def search() -> WebSearch:
        from pasture.adapters.remote.web_search import DuckDuckGoWebSearch, SearxngWebSearch

        if settings.web_search == "searxng":
            assert settings.searxng_url is not None
            return SearxngWebSearch(settings.searxng_url, timeout=settings.web_search_timeout)
        return DuckDuckGoWebSearch(settings.duckduckgo_url, timeout=settings.web_search_timeout)

    def fetcher() -> PageFetcher:
        from pasture.adapters.remote.web_fetch import HttpPageFetcher, parse_networks

        return HttpPageFetcher(
            timeout=settings.web_fetch_timeout,
            max_bytes=settings.web_fetch_max_bytes,
            allow_private=settings.web_fetch_allow_private,
            allow_networks=parse_networks(settings.web_fetch_allow_networks),
        )

    return ChatbotService(
        records,
        default_model,
        search=lazy(WebSearch, search),  # type: ignore[type-abstract]
        fetcher=lazy(PageFetcher, fetcher),  # type: ignore[type-abstract]
        embedder=embedder,
        max_tokens=settings.chat_max_tokens,
        fetch_pages=settings.web_fetch_pages,
        passages=settings.web_passages,
        fetch_timeout=settings.web_fetch_timeout,
    )


# --------------------------------------------------------------------- transcription


def _build_transcription(settings: Settings, aws: AwsClients | None = None) -> TranscriptionService:
    """PASTURE_TRANSCRIBER: `local` (faster-whisper in process), `whispercpp` or `openai`
    (a server at PASTURE_TRANSCRIBER_URL), `sagemaker` (the GPU endpoint), `none` (503). The transcriber is built on first use unless
    PASTURE_WHISPER_PRELOAD; a wrong setting fails at startup."""
    from typing import IO

    from pasture.domain.speech import AudioClip
    from pasture.ports import Transcriber

    kind = settings.transcriber
    url = settings.transcriber_url
    if kind == "sagemaker" and (aws is None or not settings.sagemaker_endpoint):
        raise Invalid(
            "PASTURE_TRANSCRIBER=sagemaker needs PASTURE_BACKEND=aws and PASTURE_SAGEMAKER_ENDPOINT"
        )
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
        if kind == "none":
            # A deployment without speech to text (an AWS stack with no GPU endpoint and no
            # whisper server): a clear 503 on use, not an import error from a missing model.
            raise Unavailable(
                "speech to text is off in this deployment (PASTURE_TRANSCRIBER=none): turn on"
                " the GPU endpoint or point PASTURE_TRANSCRIBER_URL at a whisper server"
            )
        if kind == "sagemaker":
            from pasture.adapters.aws.sagemaker_transcriber import SageMakerTranscriber

            assert settings.sagemaker_endpoint is not None and aws is not None
            return SageMakerTranscriber(aws.sagemaker_runtime(), settings.sagemaker_endpoint)
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
