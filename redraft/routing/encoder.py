"""The router's encoder: an int8 copy of the local all-MiniLM-L6-v2, for speed.

The router's decision is one forward pass of the embedding model; dynamic int8 quantisation of
its linear layers (made at load from the shipped weights, in memory, about 0.3 s) halves that
on this CPU, and the classifier is fitted on vectors from the same copy, so its decisions are as
good (BENCHMARKS.md, "Routing"). Only the router uses it: persona memory and the knowledge base
keep the full-precision vectors they store and search.
"""

from __future__ import annotations

import threading
import time
import warnings
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from redraft import embeddings as local


class Int8LocalEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 with int8 linear layers: mean pooling, unit-length vectors."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._model: Any = None
        self._lock = threading.Lock()

    def warm_up(self) -> float:
        """Load the shared model (if needed) and make the int8 copy; returns the seconds."""
        started = time.perf_counter()
        self._quantised()
        return time.perf_counter() - started

    def _quantised(self) -> Any:
        if self._model is not None:
            return self._model
        with self._lock:
            if self._model is None:
                import copy

                import torch

                base = local._load_model()
                with warnings.catch_warnings():  # torch's notice that the API moves to torchao
                    warnings.simplefilter("ignore")
                    transformer = torch.ao.quantization.quantize_dynamic(
                        copy.deepcopy(base[0].auto_model), {torch.nn.Linear}, dtype=torch.qint8
                    )
                self._model = (base.tokenizer, transformer, base.max_seq_length)
        return self._model

    def _encode(self, texts: list[str]) -> np.ndarray:
        import torch

        tokenizer, transformer, max_length = self._quantised()
        # The tokenizer is the shared model's, which is not safe to call from two threads.
        with local._encode_lock, torch.inference_mode():
            threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                batch = tokenizer(
                    texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
                )
                hidden = transformer(**batch).last_hidden_state
            finally:
                torch.set_num_threads(threads)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1).numpy()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        texts = list(texts)
        chunks = [self._encode(texts[i : i + 32]) for i in range(0, len(texts), 32)]
        return np.concatenate(chunks).tolist() if chunks else []

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]
