"""Build an ONNX graph of all-MiniLM-L6-v2 (BERT encoder + mean pooling + L2 norm) from its
safetensors weights, with `onnx.helper` and numpy only.

The model package ships no ONNX file and torch is not allowed, so the sentence-transformers
pipeline (BertModel -> mean pooling over the attention mask -> Normalize) is written out here
op by op. Pooling and normalisation live inside the graph, so callers get finished vectors.

Inputs: input_ids, attention_mask, token_type_ids, int64 [batch, seq] (both dims dynamic).
Output: sentence_embedding, float32 [batch, hidden], L2-normalised.

Only standard opset-17 ops are emitted. In-session, ORT_ENABLE_ALL fuses the GELU (+ bias)
into BiasGelu and the Q.K^T / sqrt(d) into FusedMatMul, but not the attention block: its
in-session AttentionFusion only matches pre-opset-13 graphs (Unsqueeze with an axes attribute,
LayerNormalization v1). onnxruntime.transformers.optimizer does fuse this graph into Attention
+ SkipLayerNormalization (it needs sympy), but on CPU that measured no faster, so we skip it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from onnx import NodeProto, TensorProto

# Bump when the graph changes, so caches keyed on it (OnnxEmbedder) rebuild.
GRAPH_VERSION = 1
OPSET = 17  # first opset with LayerNormalization
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "sentence_embedding"
# Added to attention scores of padding keys: exp(score - 10000) underflows to exactly 0.0 in
# float32, so padding has no effect at all, and unlike finfo.min it cannot overflow to -inf.
# -10000 is also the value the original BERT and ORT's attention fusion use.
MASK_BIAS = -10000.0


class _Graph:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[NodeProto] = []
        self.initializers: list[TensorProto] = []
        self._count = 0

    def const(self, name: str, value: npt.NDArray[Any]) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str | None = None, **attrs: Any) -> str:
        """Add a one-output node and return its output name."""
        from onnx import helper

        self._count += 1
        out = name or f"{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"n{self._count}", **attrs))
        return out


def build_minilm_onnx(model_dir: Path, out_path: Path) -> None:
    """Write the ONNX model for the BERT checkpoint in `model_dir` to `out_path`, atomically."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper
    from safetensors.numpy import load_file

    cfg = json.loads((model_dir / "config.json").read_text())
    hidden = int(cfg["hidden_size"])
    heads = int(cfg["num_attention_heads"])
    layers = int(cfg["num_hidden_layers"])
    eps = float(cfg["layer_norm_eps"])
    if cfg.get("model_type") != "bert" or cfg.get("hidden_act") != "gelu":
        raise ValueError(f"not a BERT/gelu checkpoint: {model_dir}")
    if cfg.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("only absolute position embeddings are supported")
    head_dim = hidden // heads

    w = load_file(str(model_dir / "model.safetensors"))
    # Checkpoints saved from BertModel have bare keys; ones from task heads prefix "bert.".
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in w else ""

    def p(key: str) -> npt.NDArray[np.float32]:
        return np.ascontiguousarray(w[prefix + key], dtype=np.float32)

    g = _Graph()
    f32 = np.float32

    def linear(x: str, key: str) -> str:
        # torch Linear stores [out, in]; MatMul wants [in, out]. MatMul + Add (rather than
        # Gemm) keeps the 3-D activations as they are and is what ORT's fusions look for.
        wt = g.const(f"{key}.weight", np.ascontiguousarray(p(f"{key}.weight").T))
        b = g.const(f"{key}.bias", p(f"{key}.bias"))
        return g.op("Add", [g.op("MatMul", [x, wt]), b])

    def layer_norm(x: str, key: str) -> str:
        scale = g.const(f"{key}.weight", p(f"{key}.weight"))
        bias = g.const(f"{key}.bias", p(f"{key}.bias"))
        return g.op("LayerNormalization", [x, scale, bias], axis=-1, epsilon=eps)

    def table(name: str) -> str:
        key = f"embeddings.{name}.weight"
        return g.const(key, p(key))

    # ---- shared constants
    axes_1 = g.const("axes_1", np.array([1], dtype=np.int64))
    axes_2 = g.const("axes_2", np.array([2], dtype=np.int64))
    zero_i = g.const("zero_i64", np.array([0], dtype=np.int64))
    one_f = g.const("one_f32", np.array(1.0, dtype=f32))
    split_heads = g.const("split_heads_shape", np.array([0, 0, heads, head_dim], dtype=np.int64))
    merge_heads = g.const("merge_heads_shape", np.array([0, 0, hidden], dtype=np.int64))
    sqrt_d = g.const("sqrt_head_dim", np.array(np.sqrt(head_dim), dtype=f32))
    mask_bias = g.const("mask_bias", np.array(MASK_BIAS, dtype=f32))
    sqrt2 = g.const("sqrt2", np.array(np.sqrt(2.0), dtype=f32))
    half = g.const("half", np.array(0.5, dtype=f32))

    # ---- embeddings: word + position (first seq rows of the table) + token type, then LN
    seq_len = g.op("Shape", ["input_ids"], start=1, end=2)  # [1]
    words = g.op("Gather", [table("word_embeddings"), "input_ids"], axis=0)
    positions = g.op("Slice", [table("position_embeddings"), zero_i, seq_len, zero_i])
    types = g.op("Gather", [table("token_type_embeddings"), "token_type_ids"], axis=0)
    x = g.op("Add", [g.op("Add", [words, positions]), types])
    x = layer_norm(x, "embeddings.LayerNorm")

    # ---- additive attention mask, [batch, 1, 1, seq]: 0 for real tokens, MASK_BIAS for padding.
    # The node sequence (and the Div by sqrt(d) below) follow a torch export of BertModel, so
    # onnxruntime.transformers.optimizer recognises the attention blocks.
    mask_4d = g.op("Unsqueeze", [g.op("Unsqueeze", ["attention_mask", axes_1]), axes_2])
    mask_4d = g.op("Cast", [mask_4d], to=TensorProto.FLOAT)
    attn_bias = g.op("Mul", [g.op("Sub", [one_f, mask_4d]), mask_bias])

    # ---- encoder layers
    def heads_of(t: str) -> str:
        return g.op("Reshape", [t, split_heads])  # [b, s, heads, head_dim]

    for i in range(layers):
        pre = f"encoder.layer.{i}"
        q = g.op(
            "Transpose", [heads_of(linear(x, f"{pre}.attention.self.query"))], perm=[0, 2, 1, 3]
        )
        k = g.op("Transpose", [heads_of(linear(x, f"{pre}.attention.self.key"))], perm=[0, 2, 3, 1])
        v = g.op(
            "Transpose", [heads_of(linear(x, f"{pre}.attention.self.value"))], perm=[0, 2, 1, 3]
        )
        scores = g.op("Div", [g.op("MatMul", [q, k]), sqrt_d])  # [b, heads, s, s]
        probs = g.op("Softmax", [g.op("Add", [scores, attn_bias])], axis=-1)
        ctx = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", [ctx, merge_heads])  # [b, s, hidden]
        attn = linear(ctx, f"{pre}.attention.output.dense")
        x = layer_norm(g.op("Add", [attn, x]), f"{pre}.attention.output.LayerNorm")

        # Exact GELU, (h * 0.5) * (1 + erf(h / sqrt 2)), as BERT's "gelu" (not the tanh form).
        # Written in the order torch exports it: ORT's GeluFusion matches exactly this shape.
        h = linear(x, f"{pre}.intermediate.dense")
        erf_plus_1 = g.op("Add", [g.op("Erf", [g.op("Div", [h, sqrt2])]), one_f])
        h = g.op("Mul", [g.op("Mul", [h, half]), erf_plus_1])
        out = linear(h, f"{pre}.output.dense")
        x = layer_norm(g.op("Add", [out, x]), f"{pre}.output.LayerNorm")

    # ---- mean pooling over real tokens, then L2 normalisation (sentence-transformers eps)
    mask_f = g.op("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    mask_3d = g.op("Unsqueeze", [mask_f, axes_2])  # [b, s, 1]
    summed = g.op("ReduceSum", [g.op("Mul", [x, mask_3d]), axes_1], keepdims=0)  # [b, hidden]
    counts = g.op("ReduceSum", [mask_3d, axes_1], keepdims=0)  # [b, 1]
    counts = g.op("Max", [counts, g.const("min_count", np.array(1e-9, dtype=f32))])
    mean = g.op("Div", [summed, counts])
    norm = g.op("ReduceL2", [mean], axes=[1], keepdims=1)
    norm = g.op("Max", [norm, g.const("min_norm", np.array(1e-12, dtype=f32))])
    g.op("Div", [mean, norm], name=OUTPUT_NAME)

    dims = ["batch", "sequence"]
    graph = helper.make_graph(
        g.nodes,
        "all-MiniLM-L6-v2",
        [helper.make_tensor_value_info(n, TensorProto.INT64, dims) for n in INPUT_NAMES],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", hidden])],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="pasture",
        producer_version=str(GRAPH_VERSION),
    )
    model.ir_version = 8  # the IR that opset 17 came with; keeps older runtimes happy
    onnx.checker.check_model(model)

    # Temp file in the destination directory + os.replace: concurrent builders (threads,
    # processes, Lambdas sharing /tmp) never see a half-written file.
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out_path.name + ".", suffix=".tmp", dir=out_path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the cache may be shared by other users
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
