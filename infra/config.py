"""The stack's settings: CDK context (`cdk deploy -c gpu=true`), else a JSON config file, else
the defaults below. One place, read once, failing fast on a bad value.

The config file is `infra/config.json` when it exists, or the file named by the `config`
context key; it holds the same keys as the context (camelCase), e.g.

    {"consumers": ["mobile-app", "zapier"], "gpu": true, "modelDataUrl": "s3://.../model.tar.gz"}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_FILE = ROOT / "infra" / "config.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")  # consumer names, as `pasture keys`


class ConfigError(ValueError):
    """A context or config-file value the stack cannot use; the message names the key."""


@dataclass(frozen=True)
class StackConfig:
    # Naming and lifecycle.
    stack_name: str = "Pasture"
    stage_name: str = "prod"
    # retain: the bucket, table and search domain outlive `cdk destroy` (user data);
    # destroy: everything goes (trials, CI accounts).
    removal: Literal["retain", "destroy"] = "retain"
    log_retention_days: int = 30

    # API Gateway: stage-wide throttling, and per-key limits of the usage plan.
    throttle_rate: float = 50.0
    throttle_burst: int = 100
    key_rate: float = 20.0
    key_burst: int = 40
    key_quota_per_day: int | None = None
    # Consumers whose keys the stack makes (one key each; more with `pasture keys create`).
    consumers: tuple[str, ...] = ()
    # Static keys (`PASTURE_API_KEYS` syntax) are deliberately not a stack setting: they
    # would sit in the template and the functions' environment in plain text.
    ragflow_accounts: bool = False

    # OpenSearch: a small single node for trials; size it up for real corpora.
    search_instance_type: str = "t3.small.search"
    search_instance_count: int = 1
    search_volume_gb: int = 10
    search_engine_version: str = "2.19"

    # Inference. gpu: the SageMaker endpoint (the off switch: false deletes it). chatUrl: any
    # OpenAI-compatible server instead (or as well: the endpoint wins for chat).
    gpu: bool = False
    gpu_instance_type: str = "ml.g5.xlarge"
    inference_image: str | None = None  # an ECR image URI; unset: built from infra/inference
    model_data_url: str | None = None  # s3://.../model.tar.gz (model.gguf + ggml-whisper.bin)
    embedder: Literal["local", "sagemaker"] = "local"
    chat_url: str | None = None
    chat_model_name: str = "default"
    chat_context_length: int = 4096
    transcriber_url: str | None = None  # a whisper.cpp server, when there is no endpoint

    # Functions.
    tracing: bool = False
    ingest_concurrency: int = 4  # batches the state machine runs at once
    web_adapter_layer_version: int = 26  # AWS Lambda Web Adapter (arm64), for chat
    memory: dict[str, int] = field(default_factory=dict)  # function name -> MB overrides
    alarm_email: str | None = None
    layers_dir: str = "layers/build"

    def __post_init__(self) -> None:
        if self.removal not in ("retain", "destroy"):
            raise ConfigError("removal must be 'retain' or 'destroy'")
        if self.embedder not in ("local", "sagemaker"):
            raise ConfigError("embedder must be 'local' or 'sagemaker'")
        for name in self.consumers:
            if not _NAME.match(name):
                raise ConfigError(f"consumer name {name!r}: 1-64 letters, digits or _ . @ -")
        if len(set(self.consumers)) != len(self.consumers):
            raise ConfigError("consumers: a name is listed twice")
        if self.gpu and not self.model_data_url:
            raise ConfigError(
                "gpu=true needs modelDataUrl: the s3:// URL of a model.tar.gz holding"
                " model.gguf and ggml-whisper.bin (infra/inference/README.md)"
            )
        if self.model_data_url and not self.model_data_url.startswith("s3://"):
            raise ConfigError("modelDataUrl must be an s3:// URL")
        if self.embedder == "sagemaker" and not self.gpu:
            raise ConfigError("embedder=sagemaker needs gpu=true (the endpoint computes it)")
        for url_key, url in (("chatUrl", self.chat_url), ("transcriberUrl", self.transcriber_url)):
            if url and not url.startswith(("https://", "http://")):
                raise ConfigError(f"{url_key} must be an http(s) URL")
        if self.search_instance_count < 1 or self.search_volume_gb < 10:
            raise ConfigError("searchInstanceCount >= 1 and searchVolumeGb >= 10")
        if not 1 <= self.ingest_concurrency <= 40:
            raise ConfigError("ingestConcurrency must be 1-40 (an inline Map runs at most 40)")
        if self.log_retention_days not in _RETENTION_DAYS:
            raise ConfigError(f"logRetentionDays must be one of {sorted(_RETENTION_DAYS)}")

    @property
    def chat_model(self) -> Literal["endpoint", "url", "none"]:
        return "endpoint" if self.gpu else "url" if self.chat_url else "none"

    @property
    def transcriber(self) -> Literal["sagemaker", "whispercpp", "none"]:
        return "sagemaker" if self.gpu else "whispercpp" if self.transcriber_url else "none"


# CloudWatch Logs' allowed retention periods.
_RETENTION_DAYS = frozenset(
    {1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557}
)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Context from the command line arrives as strings; the file as JSON values."""
    kind = type(default)
    try:
        if isinstance(default, bool) or key in _BOOLS:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ValueError(value)
        if key == "consumers":
            if isinstance(value, str):
                value = [v for v in (p.strip() for p in value.split(",")) if v]
            return tuple(str(v) for v in value)
        if key == "memory":
            raw = json.loads(value) if isinstance(value, str) else value
            return {str(k): int(v) for k, v in dict(raw).items()}
        if value is None or (isinstance(value, str) and value == "" and default is None):
            return None
        if key in _INTS or kind is int:
            return int(value)
        if kind is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{_camel(key)}: cannot use {value!r}") from exc


_BOOLS = frozenset({"gpu", "tracing", "ragflow_accounts"})
_INTS = frozenset({"key_quota_per_day"})


def load(context: dict[str, Any], config_file: Path | None = None) -> StackConfig:
    """`context`: the CDK context values (node.try_get_context per key, or a plain dict)."""
    path = Path(context["config"]) if context.get("config") else config_file
    if path is None and DEFAULT_CONFIG_FILE.is_file():
        path = DEFAULT_CONFIG_FILE
    from_file: dict[str, Any] = {}
    if path is not None:
        try:
            from_file = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"config file {path}: {exc}") from exc
        if not isinstance(from_file, dict):
            raise ConfigError(f"config file {path}: expected a JSON object")
    known = {_camel(f.name): f for f in fields(StackConfig)}
    unknown = sorted(set(from_file) - set(known))
    if unknown:
        raise ConfigError(f"config file {path}: unknown keys {unknown} (known: {sorted(known)})")
    defaults = StackConfig()
    values: dict[str, Any] = {}
    for camel, f in known.items():
        raw = context.get(camel, from_file.get(camel))
        if raw is not None:
            values[f.name] = _coerce(f.name, raw, getattr(defaults, f.name))
    return StackConfig(**values)


def context_keys() -> list[str]:
    return [_camel(f.name) for f in fields(StackConfig)]
