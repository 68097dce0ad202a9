"""Converters from public dialogue datasets to redraft's evaluation schema (`EvalCase`).

Users bring the files (they are not redistributed here): PersonaChat and FoCus (persona),
INSCIT (knowledge-seeking) — the datasets of MARA (arXiv 2511.08319) — and PENGUIN
(personalized safety, arXiv 2505.18882). Every turn the chatbot answers becomes one case;
`turns="last"` keeps only the last turn of each dialogue.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable
from itertools import chain, zip_longest
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from redraft.eval.datasets import (
    SAMPLE,
    DatasetError,
    EvalCase,
    describe,
    read_cases,
    read_jsonl,
    sample_path,
    unique_ids,
)
from redraft.parsing import JSONLimitError, parse_json

FORMATS: tuple[str, ...] = ("jsonl", "personachat", "focus", "inscit", "penguin")
Turns = Literal["all", "last"]

_SILENCE = "__SILENCE__"  # PersonaChat's placeholder when the bot speaks first


def load_dataset(
    source: str | Path,
    format: str = "auto",
    *,
    persona: Literal["self", "partner"] = "self",
    turns: Turns = "all",
    split: str = "valid",
    reveal_profile: bool = False,
) -> list[EvalCase]:
    """Read `source` (`"sample"` for the shipped sample) as a list of cases with unique ids.

    `format="auto"` tells the format from the path and content; the options apply to the
    converters that have them (see each `from_*`).
    """
    path = sample_path() if str(source) == SAMPLE else Path(source)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    if format == "auto":
        format = detect_format(path)
    if format == "jsonl":
        return read_cases(path)
    if format == "penguin":
        return from_penguin(path, reveal_profile=reveal_profile)
    if format == "personachat":
        return from_personachat(path, persona=persona, turns=turns, split=split)
    if format == "focus":
        return from_focus(path, turns=turns)
    if format == "inscit":
        return from_inscit(path, turns=turns)
    raise DatasetError(f"unknown dataset format {format!r}; use one of {', '.join(FORMATS)}")


def detect_format(path: Path) -> str:
    if path.is_dir():
        if (path / "profiles.jsonl").exists() and (path / "queries.jsonl").exists():
            return "penguin"
        raise DatasetError(
            f"{path}: a directory must hold PENGUIN's profiles.jsonl and queries.jsonl"
        )
    if path.suffix == ".jsonl":
        return "jsonl"
    if path.suffix == ".txt":
        return "personachat"
    if path.suffix == ".json":
        data = read_json(path)
        if isinstance(data, dict) and isinstance(data.get("data"), list):
            return "focus"
        if isinstance(data, dict) and any(
            isinstance(v, list) and v and isinstance(v[0], dict) and "personality" in v[0]
            for v in data.values()
        ):
            return "personachat"
        if (
            isinstance(data, dict)
            and data
            and all(isinstance(v, dict) and "turns" in v for v in data.values())
        ):
            return "inscit"
    raise DatasetError(f"{path}: cannot tell the dataset format; pass it explicitly (--format)")


# ── helpers ─────────────────────────────────────────────────────────────────────────────


def read_json(path: Path) -> Any:
    try:
        return parse_json(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except JSONLimitError as exc:
        raise DatasetError(f"{path}: {exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON: {exc}") from exc


def make_case(where: str, **fields: Any) -> EvalCase:
    try:
        return EvalCase.model_validate(fields)
    except ValidationError as exc:
        raise DatasetError(f"{where}: {describe(exc)}") from exc


def ending_with_user(texts: list[str]) -> list[dict[str, str]]:
    """Alternating turns whose last one is the user's (roles counted back from the end)."""
    last = len(texts) - 1
    return [
        {"role": "user" if (last - i) % 2 == 0 else "assistant", "content": text}
        for i, text in enumerate(texts)
    ]


def is_silence(text: str) -> bool:
    return re.sub(r"\s+", "", text) == _SILENCE


def strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DatasetError(f"{where}: expected a list of strings")
    return value


def keep_turns(dialogues: Iterable[list[EvalCase]], turns: Turns) -> list[EvalCase]:
    if turns == "last":
        return [cases[-1] for cases in dialogues if cases]
    return [case for cases in dialogues for case in cases]


# ── PersonaChat ─────────────────────────────────────────────────────────────────────────


def from_personachat(
    path: Path,
    *,
    persona: Literal["self", "partner"] = "self",
    turns: Turns = "all",
    split: str = "valid",
) -> list[EvalCase]:
    """PersonaChat (Zhang et al., 2018) in either public form:

    - ParlAI text files (`train_self_original.txt`, `valid_both_revised.txt`, ...): numbered
      lines, `your persona:` / `partner's persona:` lines, then `partner utterance<TAB>reply`
      lines (candidates after a further tab are ignored); `1` starts a dialogue.
    - Hugging Face's JSON (`personachat_self_original.json`): `{split: [{"personality",
      "utterances": [{"history", "candidates"}]}]}`, the last candidate being the reply.

    The partner is the user; the reply of the persona's owner is the reference. `persona`
    picks whose facts become `persona`: `self` (the replying side's own persona, the usual
    PersonaChat setting — note that redraft's critics then read facts about the speaker as
    facts about the user) or `partner` (the user's; only the `both_*` text files have them).
    """
    if path.suffix == ".json":
        return personachat_json(read_json(path), path, persona=persona, turns=turns, split=split)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path} is not UTF-8 text: {exc.reason}") from exc
    dialogues: list[dict[str, Any]] = []
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        match = re.match(r"(\d+) (.*)$", raw)
        if match is None:
            raise DatasetError(f"{path} line {number}: expected '<number> <text>' (ParlAI format)")
        text = match.group(2)
        if match.group(1) == "1" or not dialogues:
            dialogues.append({"self": [], "partner": [], "turns": []})
        dialogue = dialogues[-1]
        if text.startswith("your persona:"):
            dialogue["self"].append(text.removeprefix("your persona:").strip())
        elif text.startswith("partner's persona:"):
            dialogue["partner"].append(text.removeprefix("partner's persona:").strip())
        else:
            fields = text.split("\t")
            if len(fields) < 2:
                raise DatasetError(
                    f"{path} line {number}: expected the partner's utterance and the reply, "
                    "separated by a tab"
                )
            dialogue["turns"].append((fields[0].strip(), fields[1].strip(), number))
    if persona == "partner" and dialogues and not any(d["partner"] for d in dialogues):
        raise DatasetError(f"{path}: no partner's persona lines; use persona=self")
    out = []
    for index, dialogue in enumerate(dialogues, 1):
        history: list[dict[str, str]] = []
        cases = []
        for turn, (said, reply, number) in enumerate(dialogue["turns"], 1):
            if not is_silence(said):
                cases.append(
                    make_case(
                        f"{path} line {number}",
                        id=f"personachat-{index}-{turn}",
                        history=list(history),
                        persona=dialogue[persona],
                        query=said,
                        reference=reply,
                    )
                )
                history.append({"role": "user", "content": said})
            history.append({"role": "assistant", "content": reply})
        out.append(cases)
    return unique_ids(keep_turns(out, turns), path)


def personachat_json(
    data: Any, path: Path, *, persona: str, turns: Turns, split: str
) -> list[EvalCase]:
    if persona != "self":
        raise DatasetError(f"{path}: the JSON form has only the replying side's persona")
    if not isinstance(data, dict) or not isinstance(data.get(split), list):
        available = ", ".join(data) if isinstance(data, dict) else "none"
        raise DatasetError(f"{path}: no split {split!r} (available: {available})")
    out = []
    for index, dialogue in enumerate(data[split], 1):
        where = f"{path} {split}[{index - 1}]"
        if not isinstance(dialogue, dict):
            raise DatasetError(f"{where}: expected an object")
        facts = strings(dialogue.get("personality"), f"{where}.personality")
        cases = []
        for turn, utterance in enumerate(dialogue.get("utterances") or [], 1):
            at = f"{where}.utterances[{turn - 1}]"
            said = [
                t for t in strings(utterance.get("history"), f"{at}.history") if not is_silence(t)
            ]
            candidates = strings(utterance.get("candidates"), f"{at}.candidates")
            if not said:
                continue
            cases.append(
                make_case(
                    at,
                    id=f"personachat-{split}-{index}-{turn}",
                    history=ending_with_user(said)[:-1],
                    persona=facts,
                    query=said[-1],
                    reference=candidates[-1] if candidates else None,
                )
            )
        out.append(cases)
    return unique_ids(keep_turns(out, turns), path)


# ── FoCus ───────────────────────────────────────────────────────────────────────────────


def from_focus(path: Path, *, turns: Turns = "all") -> list[EvalCase]:
    """FoCus (Jang et al., AAAI 2022), the released `train.json` / `valid.json` form:
    `{"data": [{"dialogID", "persona", "knowledge", "utterance": [{"dialogue<N>": [...],
    "knowledge_candidates", "knowledge_answer_index", ...}]}]}`.

    `dialogue<N>` holds the whole dialogue up to turn N, the human first; when it ends with the
    machine's answer, that answer is the reference. The persona is the human's (the user's).
    Knowledge is the grounding passage (`knowledge_candidates[knowledge_answer_index]`), or all
    candidates when the index is missing (as in a test set).
    """
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DatasetError(f'{path}: expected {{"data": [...]}} (FoCus format)')
    out = []
    for index, dialogue in enumerate(data["data"]):
        where = f"{path} data[{index}]"
        if not isinstance(dialogue, dict):
            raise DatasetError(f"{where}: expected an object")
        name = str(dialogue.get("dialogID") or index + 1)
        facts = strings(dialogue.get("persona") or [], f"{where}.persona")
        cases = []
        for turn, utterance in enumerate(dialogue.get("utterance") or [], 1):
            at = f"{where}.utterance[{turn - 1}]"
            key = f"dialogue{turn}"
            if not isinstance(utterance, dict) or key not in utterance:
                raise DatasetError(f"{at}: missing {key!r}")
            texts = strings(utterance[key], f"{at}.{key}")
            reference = None
            if len(texts) % 2 == 0:  # ends with the machine's answer
                texts, reference = texts[:-1], texts[-1] if texts else None
            if not texts:
                raise DatasetError(f"{at}.{key}: no human utterance")
            candidates = strings(
                utterance.get("knowledge_candidates") or [], f"{at}.knowledge_candidates"
            )
            answer = utterance.get("knowledge_answer_index")
            if isinstance(answer, int) and 0 <= answer < len(candidates):
                candidates = [candidates[answer]]  # the passage the answer drew on
            cases.append(
                make_case(
                    at,
                    id=f"focus-{name}-{turn}",
                    history=ending_with_user(texts)[:-1],
                    persona=facts,
                    knowledge=candidates,
                    query=texts[-1],
                    reference=reference,
                )
            )
        out.append(cases)
    return unique_ids(keep_turns(out, turns), path)


# ── INSCIT ──────────────────────────────────────────────────────────────────────────────


def from_inscit(path: Path, *, turns: Turns = "all") -> list[EvalCase]:
    """INSCIT (Wu et al., 2023), the released `train.json` / `dev.json` form:
    `{conversation_id: {"seedArticle", "turns": [{"context": [...], "labels": [{"responseType",
    "response", "evidence": [{"passage_id", "passage_text", "passage_titles"}]}]}]}}`.

    `context` is the dialogue so far, ending with the user's question. The first label's
    response is the reference; the evidence passages of all labels are the knowledge (titled
    "Article > Section: text"). A test set without labels gives cases with no knowledge.
    """
    data = read_json(path)
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected an object of conversations (INSCIT format)")
    out = []
    for name, conversation in data.items():
        where = f"{path} {name!r}"
        if not isinstance(conversation, dict) or not isinstance(conversation.get("turns"), list):
            raise DatasetError(f"{where}: expected an object with a list of turns")
        cases = []
        for turn, entry in enumerate(conversation["turns"], 1):
            at = f"{where} turns[{turn - 1}]"
            texts = strings(
                entry.get("context") if isinstance(entry, dict) else None, f"{at}.context"
            )
            if not texts:
                raise DatasetError(f"{at}.context: empty")
            labels = [label for label in entry.get("labels") or [] if isinstance(label, dict)]
            passages = dict.fromkeys(
                titled(evidence)
                for evidence in chain.from_iterable(label.get("evidence") or [] for label in labels)
                if isinstance(evidence, dict) and evidence.get("passage_text")
            )
            cases.append(
                make_case(
                    at,
                    id=f"inscit-{name}-{turn}",
                    history=ending_with_user(texts)[:-1],
                    knowledge=list(passages),
                    query=texts[-1],
                    reference=labels[0].get("response") if labels else None,
                )
            )
        out.append(cases)
    return unique_ids(keep_turns(out, turns), path)


def titled(evidence: dict[str, Any]) -> str:
    titles = [t for t in evidence.get("passage_titles") or [] if isinstance(t, str) and t]
    text = str(evidence["passage_text"]).strip()
    return f"{' > '.join(titles)}: {text}" if titles else text


# ── PENGUIN ─────────────────────────────────────────────────────────────────────────────


def from_penguin(directory: Path, *, reveal_profile: bool = False) -> list[EvalCase]:
    """PENGUIN (Wu et al., NeurIPS 2025) as re-shaped in `shared/data/penguin/`: a directory
    with `profiles.jsonl` (profile_id, domain, scenario, attributes) and `queries.jsonl`
    (query_id, query, domain, scenario, profile_id).

    Each query is a case whose `profile` (the ten attributes) goes to the safety judge. The
    chatbot does not see it unless `reveal_profile` (then the attributes are its persona) —
    PENGUIN's "with context" condition. Cases alternate between domains, so the first N of
    them (`--limit`) cover every domain.
    """
    profiles: dict[Any, dict[str, str]] = {}
    for number, row in read_jsonl(directory / "profiles.jsonl"):
        attributes = row.get("attributes")
        if "profile_id" not in row or not isinstance(attributes, dict):
            raise DatasetError(
                f"{directory / 'profiles.jsonl'} line {number}: needs profile_id and attributes"
            )
        profiles[row["profile_id"]] = {str(k): str(v) for k, v in attributes.items()}
    by_domain: dict[str, list[EvalCase]] = defaultdict(list)
    queries = directory / "queries.jsonl"
    for number, row in read_jsonl(queries):
        where = f"{queries} line {number}"
        profile = profiles.get(row.get("profile_id"))
        if profile is None:
            raise DatasetError(f"{where}: profile_id {row.get('profile_id')!r} is not in profiles")
        facts = [f"{name}: {value}" for name, value in profile.items()]
        by_domain[str(row.get("domain"))].append(
            make_case(
                where,
                id=f"penguin-{row.get('query_id', number)}",
                query=row.get("query"),
                persona=facts if reveal_profile else [],
                profile=profile,
            )
        )
    interleaved = chain.from_iterable(zip_longest(*by_domain.values()))
    return unique_ids([case for case in interleaved if case is not None], directory)
