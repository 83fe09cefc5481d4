"""Tokenizer port over a Hugging Face `tokenizer.json`, via the `tokenizers` library."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pasture.ports import Tokenizer

if TYPE_CHECKING:
    import tokenizers


def load_hf_tokenizer(path: Path) -> tokenizers.Tokenizer:
    """A fresh tokenizer from `path` with truncation and padding switched off.

    MiniLM's tokenizer.json ships with truncation to 128 and fixed padding to 128 enabled;
    callers switch on what they need on their own instance (settings are per object and
    mutating one shared between threads would race).
    """
    from tokenizers import Tokenizer as _HFTokenizer

    tok = _HFTokenizer.from_file(str(path))
    tok.no_truncation()
    tok.no_padding()
    return tok


class HuggingFaceTokenizer(Tokenizer):
    """Token character spans for chunking, counted exactly as the embedder counts them.

    No truncation: chunking must see every token of a long document. Special tokens are not
    added ([CLS]/[SEP] are the embedder's business, not part of the text's length).
    """

    def __init__(self, tokenizer_json: Path) -> None:
        self._path = Path(tokenizer_json)
        self._tok: tokenizers.Tokenizer | None = None
        self._lock = threading.Lock()

    def _tokenizer(self) -> tokenizers.Tokenizer:
        # Loaded lazily (import + parse cost ~100 ms) and once, even under concurrent callers.
        tok = self._tok
        if tok is None:
            with self._lock:
                if self._tok is None:
                    self._tok = load_hf_tokenizer(self._path)
                tok = self._tok
        return tok

    def spans(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        if not texts:
            return []
        encodings = self._tokenizer().encode_batch(list(texts), add_special_tokens=False)
        # Offsets are character offsets into the original (un-normalised) text.
        return [[(int(s), int(e)) for s, e in enc.offsets] for enc in encodings]
