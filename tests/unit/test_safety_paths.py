"""The safety critic's path library: a lookup never runs a model; a vector made already is used."""

from __future__ import annotations

import numpy as np

from redraft.embeddings import LocalEmbeddings
from redraft.safety.paths import AcquisitionPath, PathLibrary, WordIndex, read_paths

FATHER = "My father just died and I can't function."


class KnownVectors(LocalEmbeddings):
    """Vectors of a fixed set of texts, as if the process had embedded them; any other text
    would need the model, which is counted."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        super().__init__()
        self.vectors = vectors
        self.encoded: list[str] = []

    def embedded(self, text: str) -> np.ndarray | None:
        vector = self.vectors.get(text)
        return None if vector is None else np.asarray(vector)

    def _encode_now(self, texts: list[str]) -> np.ndarray:
        self.encoded += texts
        return np.asarray([self.vectors[t] for t in texts])


def library(embeddings: LocalEmbeddings | None = None) -> PathLibrary:
    paths = [
        AcquisitionPath(query="I lost my job today.", best_path=["Economic Status"]),
        AcquisitionPath(query="My mother passed away last week.", best_path=["Emotional State"]),
    ]
    return PathLibrary(paths, embeddings)


async def test_a_query_nobody_embedded_is_looked_up_by_words():
    examples = await PathLibrary(read_paths()).nearest("My father died yesterday. What now?", 3)
    assert examples[0]["query"] == FATHER
    assert {e["by"] for e in examples} == {"words"}
    assert len(examples) == 3


async def test_the_lookup_by_words_runs_no_model():
    vectors = {"I lost my job today.": [1.0, 0.0], "My mother passed away last week.": [0.0, 1.0]}
    embeddings = KnownVectors(vectors)
    found = await library(embeddings).nearest("They let me go from my job", 1)
    assert found[0]["query"] == "I lost my job today." and found[0]["by"] == "words"
    assert embeddings.encoded == []


async def test_a_query_embedded_already_is_looked_up_by_meaning():
    vectors = {
        "I lost my job today.": [1.0, 0.0],
        "My mother passed away last week.": [0.0, 1.0],
        "Grief after a funeral": [0.1, 0.99],  # no word in common with the nearest
    }
    embeddings = KnownVectors(vectors)
    paths = library(embeddings)
    paths.embed_paths()  # else made in a background thread on the first lookup with a vector
    found = await paths.nearest("Grief after a funeral", 1)
    assert found[0]["query"] == "My mother passed away last week."
    assert found[0]["by"] == "meaning"
    assert embeddings.encoded == ["I lost my job today.", "My mother passed away last week."]


async def test_until_the_paths_are_embedded_lookups_go_by_words():
    vectors = {"I lost my job today.": [1.0, 0.0], "My mother passed away last week.": [0.0, 1.0]}
    embeddings = KnownVectors({**vectors, "my job is gone": [1.0, 0.0]})
    paths = library(embeddings)
    first = await paths.nearest("my job is gone", 1)
    assert first[0]["by"] in ("words", "meaning")  # the paths' vectors are being made
    assert paths._embedding is not None
    paths._embedding.join()
    assert (await paths.nearest("my job is gone", 1))[0]["by"] == "meaning"


def test_words_that_share_a_stem_score_far_above_chance_overlap():
    index = WordIndex(["divorce lawyer fees", "weather tomorrow"])
    scores = index.scores("after my divorced parents")
    assert scores[0] > 5 * scores[1]
