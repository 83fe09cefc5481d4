"""What the stack deploys, as plain data derived from the route manifest (no CDK import).

`functions()` names every Lambda: one per group of `pasture.api.groups.GROUPS`, plus the
non-HTTP ones (`ingest`, `authorizer`, `keys`). `routes()` turns the groups' path prefixes
into API Gateway resources. The stack, the layer-size bench and the tests all read these, so
nothing lists a path or a function twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pasture.api.groups import GROUPS, Group

# Layers (built by layers/build.py into layers/build/<name>/).
DEPS = "deps"  # third-party runtime: FastAPI, pydantic, Mangum, Powertools, boto3, opensearch-py, parsers
ML = "ml"  # onnxruntime + tokenizers: the in-Lambda embedder and tokenizer
AUDIO = "audio"  # PyAV: decoding uploaded audio before it goes to the endpoint
MODELS = "models"  # all-MiniLM-L6-v2 as a built ONNX graph + tokenizer.json
CODE = "code"  # shared/pasture
LAYERS = (DEPS, ML, AUDIO, MODELS, CODE)
# Where the model layer's files land in a function (/opt is where layers unpack).
MODEL_LAYER_DIR = "pasture-models/all-MiniLM-L6-v2"
MODEL_DIR_IN_LAMBDA = f"/opt/{MODEL_LAYER_DIR}"

# Groups without the authorizer: the system probes, and RAGFlow's account routes (they log in
# with a password and then use the key they get; no key exists before that).
OPEN_GROUPS = frozenset({"system", "accounts"})


@dataclass(frozen=True)
class FunctionPlan:
    name: str  # also functions/<name>/
    ports: frozenset[str]
    layers: tuple[str, ...]
    memory_mb: int
    timeout_s: int
    handler: str = "handler.handler"
    group: Group | None = None  # an HTTP group; None for ingest/authorizer/keys
    streams: bool = False  # behind the Lambda Web Adapter, API Gateway STREAM integration
    authorized: bool = True  # behind the REQUEST authorizer (HTTP groups only)
    env: dict[str, str] = field(default_factory=dict)


def _layers_for(ports: frozenset[str]) -> tuple[str, ...]:
    out = [DEPS]
    if ports & {"embedder", "tokenizer"}:
        out += [ML, MODELS]
    if "transcriber" in ports:
        out.append(AUDIO)
    out.append(CODE)
    return tuple(out)


# Memory: a Lambda's CPU share grows with memory (1,769 MB = one vCPU); the embedder wants it.
_MEMORY = {"datasets": 1769, "retrieval": 1769, "chat": 1769, "transcription": 1024}


def functions(*, ragflow_accounts: bool = False) -> list[FunctionPlan]:
    """Every Lambda of the stack. The accounts group only when RAGFlow accounts are on (it
    answers nothing useful otherwise, and it is the one group open to the internet that can
    write)."""
    out: list[FunctionPlan] = []
    for g in GROUPS:
        if g.name == "accounts" and not ragflow_accounts:
            continue
        out.append(
            FunctionPlan(
                name=g.name,
                ports=g.ports,
                layers=_layers_for(g.ports),
                memory_mb=_MEMORY.get(g.name, 512),
                # Streaming chat may run long (API Gateway allows 15 minutes when streaming);
                # buffered integrations end at API Gateway's 29 s anyway.
                timeout_s=900 if g.streams else 30,
                handler="run.sh" if g.streams else "handler.handler",
                group=g,
                streams=g.streams,
                authorized=g.name not in OPEN_GROUPS,
            )
        )
    ingest_ports = frozenset({"records", "blobs", "search_index", "embedder", "tokenizer"})
    out.append(FunctionPlan("ingest", ingest_ports, _layers_for(ingest_ports), 2048, 900))
    # The authorizer reads keys (static ones from its environment, consumer keys in the table).
    out.append(FunctionPlan("authorizer", frozenset({"records"}), (DEPS, CODE), 512, 10))
    # The custom resource that makes consumer keys (table + API Gateway key + usage plan).
    out.append(FunctionPlan("keys", frozenset({"records", "api_keys"}), (DEPS, CODE), 512, 60))
    return out


# --------------------------------------------------------------------------- routes


@dataclass(frozen=True)
class Route:
    """One API Gateway resource with an ANY method sent to `group`'s function."""

    path: str  # "/", "/v1/projects/{namespace}", ".../{proxy+}"
    group: str


def _segments(path: str) -> tuple[str, ...]:
    return tuple(p for p in path.split("/") if p)


def _is_var(segment: str) -> bool:
    return segment.startswith("{") and segment.endswith("}")


def routes(groups: tuple[Group, ...] | list[Group] = GROUPS) -> list[Route]:
    """The resources and methods that send each group's prefixes to its function.

    A prefix owns its own path and everything below it, except what a longer prefix owns.
    API Gateway forbids two variable siblings (`{project}` next to `{proxy+}`), so where a
    longer prefix puts a path variable below an owned resource, the owner keeps that variable
    resource (and a `{proxy+}` below it) instead of a `{proxy+}` of its own. `/` is only the
    root itself: nothing is sent anywhere by default (API Gateway answers unknown paths).
    """
    owner: dict[tuple[str, ...], str] = {}
    for g in groups:
        for prefix in g.prefixes:
            segs = _segments(prefix)
            if segs in owner and owner[segs] != g.name:
                raise ValueError(f"prefix {prefix} is claimed by {owner[segs]} and {g.name}")
            owner[segs] = g.name
    # Every resource the prefixes need, with their ancestors.
    nodes: set[tuple[str, ...]] = set()
    for segs in owner:
        nodes.update(segs[:i] for i in range(len(segs) + 1))
    # Variable siblings must share one name.
    for node in nodes:
        if node and _is_var(node[-1]):
            names = {n[-1] for n in nodes if n[:-1] == node[:-1] and _is_var(n[-1])}
            if len(names) > 1:
                raise ValueError(f"/{'/'.join(node[:-1])} has variables {sorted(names)}")

    def covering(node: tuple[str, ...]) -> str | None:
        for i in range(len(node), 0, -1):
            if node[:i] in owner:
                return owner[node[:i]]
        return owner.get(()) if node == () else None

    out: list[Route] = []
    for node in sorted(nodes):
        g = covering(node)
        if g is None:
            continue  # an intermediate resource nobody owns (/v1, /api)
        out.append(Route("/" + "/".join(node), g))
        if node == ():
            continue  # the root is exact
        var_children = [n for n in nodes if n[:-1] == node and _is_var(n[-1])]
        if var_children:
            continue  # the variable child (owned or inherited) covers the rest
        out.append(Route("/" + "/".join((*node, "{proxy+}")), g))
    # A variable below an owned resource that no prefix names (e.g. {dataset_id} under
    # /api/v1/dataset) is inherited by the owner: `nodes` already holds it as an ancestor.
    return sorted(out, key=lambda r: r.path)
