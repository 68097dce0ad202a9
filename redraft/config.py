"""One pydantic config for the whole refiner, with environment overrides.

`RefinerConfig()` reads `REDRAFT_*` variables (plus `OPENAI_API_KEY` / `OPENAI_BASE_URL`), so a
process configured by its environment needs no code. The same model is the graph's LangGraph
context schema: `langgraph.json` users pass these fields as the run's `context`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from typing_extensions import TypeForm

from redraft.embeddings import local_model_installed

Aspect = Literal["factuality", "personalization", "coherence", "safety"]
"""The built-in critics' aspects: those the embedding router scores by its own rules (and
`learn_routing` learns). Which critics a turn may run is the registry's to say (`critics`)."""
# PENGUIN's (arXiv 2505.18882) seven sensitive domains.
Domain = Literal["Relationship", "Career", "Financial", "Social", "Health", "Life", "Education"]
Strategy = Literal["parallel", "sequential", "self_refine", "none"]
PlannerMode = Literal["router", "llm", "hybrid", "all"]
StructuredOutputMethod = Literal["json_schema", "function_calling", "json_mode"]
StructuredOutputMode = Literal["auto", StructuredOutputMethod]
CheckpointerKind = Literal["auto", "sqlite", "postgres", "memory"]
KnowledgeBaseMode = Literal["auto", "on", "off"]
Role = Literal["responder", "planner", "critic", "editor", "judge", "memory"]


CRISIS_RESOURCES = {
    "en-US": "If you are in danger or thinking about ending your life, please call or text 988 "
    "(Suicide & Crisis Lifeline, 24/7) or call 911.",
    "en-GB": "If you are in danger or thinking about ending your life, please call Samaritans on "
    "116 123 (free, 24/7) or 999.",
    "default": "If you are in danger or thinking about ending your life, please call your local "
    "emergency number now. findahelpline.com lists free, confidential helplines in your country.",
}


class RoutingExample(BaseModel):
    """One labelled turn for the router's classifier: what kind of request the text is."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1)
    label: Literal["chitchat", "knowledge", "task", "personal", "sensitive"]
    domain: Domain | None = Field(None, description="Required for (and only for) sensitive.")

    @model_validator(mode="after")
    def _domain_iff_sensitive(self) -> RoutingExample:
        if (self.label == "sensitive") != (self.domain is not None):
            raise ValueError("domain is required for label 'sensitive' and only for it")
        return self


def comma_list(value: object) -> object:
    """A comma-separated string from the environment as a list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def registered_critics() -> list[str]:
    """Every critic registered in this process: the built-ins, then user critics."""
    # Imported here: the critics' modules import this one.
    from redraft.agents import CRITICS

    return list(CRITICS)


def known_critics(value: list[str]) -> list[str]:
    """Each name a registered critic (error: the known ones listed), each once."""
    if not value:
        raise ValueError("at least one critic is needed")
    known = registered_critics()
    unknown = [name for name in value if name not in known]
    if unknown:
        raise ValueError(
            f"unknown critic(s) {', '.join(map(repr, unknown))}; known critics: "
            f"{', '.join(known)} (add one with redraft.register_critic or critic_modules)"
        )
    return list(dict.fromkeys(value))


def import_critic_modules(entries: list[str]) -> list[str]:
    """Registers the critics of each entry (see `critic_modules`)."""
    from redraft.agents import load_critic_modules

    load_critic_modules(entries)
    return entries


CriticNames = Annotated[
    list[str], NoDecode, BeforeValidator(comma_list), AfterValidator(known_critics)
]


def default_home() -> Path:
    """Per-user data directory (threads and, later, personas live here)."""
    return Path(platformdirs.user_data_dir("redraft", appauthor=False))


class RefinerConfig(BaseSettings):
    """Everything a refiner needs to know; every field can be set as `REDRAFT_<FIELD>`."""

    model_config = SettingsConfigDict(
        env_prefix="REDRAFT_", extra="ignore", populate_by_name=True, validate_default=True
    )

    model: str = Field(
        "gpt-4o-mini",
        description="Default chat model for every role. `provider:model` goes through "
        "LangChain's init_chat_model; a bare name is an OpenAI(-compatible) model.",
    )
    responder_model: str | None = Field(None, description="Model that writes the draft.")
    planner_model: str | None = Field(None, description="Model of the LLM planner.")
    critic_model: str | None = Field(None, description="Model of the critics.")
    editor_model: str | None = Field(None, description="Model that merges critiques.")
    judge_model: str | None = Field(None, description="Model of the regression gate's judge.")
    memory_model: str | None = Field(
        None, description="Model that learns persona facts from turns and edits."
    )
    api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("api_key", "REDRAFT_API_KEY", "OPENAI_API_KEY"),
        description="API key of the OpenAI-compatible provider.",
    )
    base_url: str | None = Field(
        None,
        validation_alias=AliasChoices("base_url", "REDRAFT_BASE_URL", "OPENAI_BASE_URL"),
        description="Base URL of an OpenAI-compatible provider (Ollama, vLLM, llama.cpp...).",
    )
    temperature: float = Field(0.2, ge=0.0, le=2.0, description="Sampling temperature.")
    structured_output: StructuredOutputMode = Field(
        "auto",
        description="How structured outputs are requested. auto: json_schema, falling back to "
        "function_calling, then json_mode (schema in the prompt) when an endpoint rejects it or "
        "its output does not parse; the mode that works is kept per endpoint and model for the "
        "life of the process. An explicit mode is always used and never falls back.",
    )
    max_retries: int = Field(
        2, ge=0, le=10, description="Retries of a provider call that failed or timed out."
    )
    timeout_s: float = Field(
        60.0,
        gt=0,
        description="Total time one provider call may take, counted from when it is sent (not "
        "while it waits for a slot, see provider_concurrency); a reply that trickles is cut too.",
    )
    context_tokens: int | None = Field(
        None,
        ge=512,
        description="Context window of the model. None: what the server reports in /v1/models "
        "(or in a context-length error), else 8192. Prompts are trimmed to fit it.",
    )
    provider_concurrency: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="Provider calls in flight at once per endpoint and model; more wait for a "
        "slot. None: unbounded, except 1 for a server detected to serve one request at a time "
        "(llama-cpp-python's).",
    )
    deadline_s: float | None = Field(
        None,
        gt=0,
        description="Deadline of a whole turn: calls still running then are cancelled and the "
        "best reply so far is returned (`degraded` says what was cut). None: no deadline.",
    )

    strategy: Strategy = Field("parallel", description="How critiques are produced and applied.")
    planner: PlannerMode = Field(
        default_factory=lambda: "router" if local_model_installed() else "llm",
        description="How the critics of a turn are chosen: router (embedding router, no LLM "
        "call; the default when the `embeddings` extra is installed, else llm), llm (LLM "
        "planner), hybrid (router, LLM planner for unclear turns) or all.",
    )
    embeddings: str = Field(
        "local",
        description="Sentence embeddings: local (all-MiniLM-L6-v2, `embeddings` extra) or "
        "openai:<model> (e.g. openai:text-embedding-3-small).",
    )
    embedding_threads: int = Field(
        1, ge=1, le=64, description="CPU threads of the local embedding model while it encodes."
    )
    hybrid_threshold: float = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="planner=hybrid: the LLM planner decides when the router's confidence in any "
        "aspect is below this: for a rule-scored aspect, the distance of its score from 0.5 "
        "(scaled to 0–1); for one learned from the LLM planner, how settled its decision is "
        "across bootstrap refits (the share that agree: 0 at half, 1 at all).",
    )
    extra_examples: list[RoutingExample] = Field(
        default_factory=list,
        description="More labelled examples for the router's classifier "
        '(`{"text": ..., "label": "chitchat|knowledge|task|personal|sensitive", "domain": ...}`).',
    )
    extra_examples_file: Path | None = Field(
        None, description="A JSONL file of more router examples, one example per line."
    )
    critic_modules: Annotated[
        list[str], NoDecode, BeforeValidator(comma_list), AfterValidator(import_critic_modules)
    ] = Field(
        default_factory=list,
        description="Critics from user code, imported and registered when the config is read: "
        "`package.module:NAME` (a Critic or a list of them) or `package.module` (its `CRITICS`), "
        "comma-separated in the environment (see docs/critics.md).",
    )
    critics: CriticNames = Field(
        default_factory=registered_critics,
        description="Critics the planner may choose from (comma-separated in the environment); "
        "default: every registered critic (the four built-ins, then those registered).",
    )
    max_rounds: int = Field(1, ge=1, le=5, description="Critique-and-merge rounds per turn.")
    gate: bool = Field(
        False,
        description="Regression gate: a pairwise judge compares draft and refined reply in both "
        "orders, and the draft is kept unless the refined reply wins.",
    )

    safety_completeness: int = Field(
        4, ge=0, le=5, description="Background completeness (0–5) at which safety stops asking."
    )
    max_questions: int = Field(
        3, ge=0, le=10, description="Most safety questions asked in one conversation."
    )
    safety_paths: Path | None = Field(
        None, description="Extra acquisition-path library (JSONL: query, best_path)."
    )
    locale: str = Field("en-US", description="Locale of the crisis resources given on block.")
    crisis_resources: dict[str, str] = Field(
        default_factory=lambda: dict(CRISIS_RESOURCES),
        description="Crisis resources per locale (`default` when the locale has none).",
    )

    max_messages: int = Field(500, ge=1, description="Most messages accepted in one request.")
    max_message_chars: int = Field(64_000, ge=1, description="Most characters in one message.")

    home: Path = Field(default_factory=default_home, description="Where local state is kept.")
    database_url: str | None = Field(
        None, description="postgresql://... to keep threads in PostgreSQL."
    )
    checkpointer: CheckpointerKind = Field(
        "auto",
        description="Thread storage: auto (PostgreSQL when database_url is set, else SQLite), "
        "sqlite, postgres or memory.",
    )
    kb: KnowledgeBaseMode = Field(
        "auto",
        description="Knowledge base as evidence: auto (used when one exists), on (a missing one "
        "degrades the turn) or off.",
    )
    kb_path: Path | None = Field(
        None,
        description="SQLite file of the knowledge base (default <home>/kb.sqlite); with "
        "database_url it lives in PostgreSQL instead.",
    )
    retrieval_k: int = Field(
        4, ge=1, le=50, description="Passages taken from each retriever per turn (the KB too)."
    )
    retriever_timeout_s: float = Field(
        5.0, gt=0, description="Timeout of one retriever call; past it the turn degrades."
    )
    memory: bool = Field(
        True,
        description="Persona memory for requests that name a user_id: relevant stored facts "
        "reach the critics, and each turn is learned from in the background.",
    )
    memory_learn: bool = Field(
        True, description="Learn facts and preferences from each turn (off: read-only memory)."
    )
    memory_top_k: int = Field(8, ge=0, le=100, description="Stored facts given per turn.")
    memory_edit_k: int = Field(
        3, ge=0, le=100, description="Past edits (nearest contexts) whose preferences are given."
    )
    memory_token_budget: int = Field(
        600,
        ge=16,
        description="Persona size limit in a prompt (tokens, ~4 characters each); a larger "
        "persona is trimmed by relevance to the query.",
    )
    log_level: str = Field("INFO", description="DEBUG shows message and persona text.")
    # Sizes of the untrusted texts of a request (messages: max_messages, max_message_chars).
    max_persona_facts: int = Field(200, ge=1, description="Most inline persona facts per request.")
    max_fact_chars: int = Field(2_000, ge=1, description="Most characters in one persona fact.")
    max_passages: int = Field(50, ge=1, description="Most knowledge passages per request.")
    max_passage_chars: int = Field(
        20_000, ge=1, description="Most characters in one knowledge passage."
    )
    max_draft_chars: int = Field(64_000, ge=1, description="Most characters in a handed-in draft.")
    max_request_chars: int = Field(
        1_000_000,
        ge=1,
        description="Most characters of messages, persona, knowledge and draft together.",
    )
    max_reply_chars: int = Field(
        64_000,
        ge=1,
        description="Most characters a model's draft or rewrite may have: a longer draft fails "
        "the turn (RefineError), a longer rewrite is dropped for the draft (degraded).",
    )
    max_persona_file_bytes: int = Field(
        1_000_000, ge=1, description="Largest persona file `redraft persona import` reads."
    )
    store_timeout_s: float = Field(
        3.0,
        gt=0,
        description="Longest a turn waits to read its thread or the user's persona memory "
        "(e.g. while PostgreSQL does not answer). A thread not read fails the turn (step "
        "threads), or, with a handed-in draft, the turn runs without it; memory not read "
        "degrades the turn to the request's own persona facts.",
    )
    router_int8: bool = Field(
        True,
        description="The router encodes with an int8 copy of the local embedding model (about "
        "half the CPU per decision; routing figures in BENCHMARKS.md).",
    )
    learn_routing: bool = Field(
        False,
        description="planner=hybrid: keep the LLM planner's decisions as labelled routing "
        "examples in the store (numeric features and the chosen aspects, no message text) for "
        "`redraft route train`. Opt-in.",
    )
    max_routing_decisions: int = Field(
        5_000, ge=1, le=1_000_000, description="Most LLM planner decisions kept for training."
    )
    router_learned_file: Path | None = Field(
        None,
        description="The router's learned weights (`redraft route train` writes them); default "
        "<home>/router_learned.json, used when it exists.",
    )
    routing_retrain_every_s: float | None = Field(
        None,
        gt=0,
        description="`redraft serve`: refit the learned router on the kept LLM planner decisions "
        "every this many seconds, in the background (as `redraft route train` does; skipped "
        "when nothing new was kept). Off by default.",
    )

    @field_validator("embeddings")
    @classmethod
    def _embeddings_choice(cls, value: str) -> str:
        if value != "local" and not (value.startswith("openai:") and len(value) > len("openai:")):
            raise ValueError("use 'local' or 'openai:<model>' (e.g. openai:text-embedding-3-small)")
        return value

    def model_for(self, role: Role) -> str:
        """The model name a role uses: its own setting, else the default."""
        return getattr(self, f"{role}_model") or self.model

    @property
    def sqlite_path(self) -> Path:
        return self.home / "threads.sqlite"

    @property
    def memory_path(self) -> Path:
        """SQLite file of the persona store (when threads are kept in SQLite too)."""
        return self.home / "memory.sqlite"

    @property
    def checkpointer_kind(self) -> Literal["sqlite", "postgres", "memory"]:
        if self.checkpointer != "auto":
            return self.checkpointer
        url = self.database_url or ""
        return "postgres" if url.startswith(("postgres://", "postgresql://")) else "sqlite"


class ApiKey(BaseModel):
    """A key clients present to `redraft serve`; bound to a user id, it acts only as that user."""

    key: SecretStr
    user_id: str | None = Field(None, min_length=1, max_length=256)


class ServerConfig(BaseSettings):
    """Settings of `redraft serve`; every field can be set as `REDRAFT_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="REDRAFT_", extra="ignore", populate_by_name=True)

    api_keys: Annotated[list[ApiKey], NoDecode] = Field(
        default_factory=list,
        description="Keys clients must send as `Authorization: Bearer <key>`, comma-separated; "
        "`KEY:USER_ID` binds a key to one user id. Empty: no authentication.",
    )
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest request body.")
    max_concurrency: int = Field(
        32, ge=1, description="Turns one process runs at once; more are refused with 429."
    )
    request_timeout_s: float = Field(
        120.0, gt=0, description="Longest a turn may take before the request fails with 504."
    )
    preload: bool = Field(
        True,
        description="Load the embedding model, router and knowledge base at start, in the "
        "background; /readyz answers 200 once they are loaded.",
    )
    workers: int = Field(
        1, ge=1, le=64, description="Server processes sharing the port (`serve --workers`)."
    )
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A connection must send a request's headers within this (of opening, or "
        "of the previous response); else it gets 408 and is closed.",
    )
    body_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A request's body must arrive within this of its headers; else the "
        "connection is closed.",
    )
    max_connections: int = Field(
        512,
        ge=1,
        description="Open connections one process keeps; past it a new one gets 503 and is "
        "closed. Kept 128 below `ulimit -n`.",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_keys(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        keys = []
        for entry in filter(None, (part.strip() for part in value.split(","))):
            key, sep, user_id = entry.partition(":")
            keys.append({"key": key, "user_id": user_id if sep else None})
        return keys

    @field_validator("api_keys")
    @classmethod
    def _usable_keys(cls, keys: list[ApiKey]) -> list[ApiKey]:
        secrets = [k.key.get_secret_value() for k in keys]
        if any(not secret.strip() for secret in secrets):
            raise ValueError("an API key must not be empty")
        if len(set(secrets)) != len(secrets):
            raise ValueError("the same API key is listed twice")
        return keys


# What a run's context may change when the caller is not trusted (LangGraph Server clients):
# how the turn is refined, never where requests, keys, files or stored data go.
RUN_SETTINGS = (
    "strategy",
    "planner",
    "critics",
    "max_rounds",
    "hybrid_threshold",
    "structured_output",
    "temperature",
    "deadline_s",
    "gate",
    "safety_completeness",
    "max_questions",
    "locale",
    "retrieval_k",
    "memory_top_k",
    "memory_token_budget",
)


def _run_settings_model() -> type[BaseModel]:
    """RunSettings: the RUN_SETTINGS fields of RefinerConfig, with their types and limits."""
    fields: dict[str, tuple[TypeForm[Any], FieldInfo]] = {}
    for name, field in RefinerConfig.model_fields.items():
        if name in RUN_SETTINGS:
            assert field.annotation is not None  # a model's fields are all annotated
            fields[name] = (field.annotation, copy.copy(field))
    # mypy checks the unpacked values against create_model's `__config__`, `__base__`, ...
    # parameters too, which no field definition matches (python/mypy#11583).
    return create_model(  # type: ignore[call-overload]
        "RunSettings",
        __doc__="Per-run settings for LangGraph Server runs; unset fields keep the server's.",
        **fields,
    )


RunSettings = _run_settings_model()
