"""One pydantic config for the whole refiner, with environment overrides.

`RefinerConfig()` reads `REDRAFT_*` variables (plus `OPENAI_API_KEY` / `OPENAI_BASE_URL`), so a
process configured by its environment needs no code. The same model is the graph's LangGraph
context schema: `langgraph.json` users pass these fields as the run's `context`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Aspect = Literal["factuality", "personalization", "coherence", "safety"]
Strategy = Literal["parallel", "sequential", "self_refine", "none"]
PlannerMode = Literal["all", "llm"]
StructuredOutputMethod = Literal["json_schema", "function_calling", "json_mode"]
CheckpointerKind = Literal["auto", "sqlite", "postgres", "memory"]
Role = Literal["responder", "planner", "critic", "editor"]


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
    structured_output: StructuredOutputMethod = Field(
        "json_schema",
        description="How structured outputs are requested; `function_calling` or `json_mode` "
        "for servers without json_schema support.",
    )
    max_retries: int = Field(2, ge=0, le=10, description="Provider retries, with backoff.")
    timeout_s: float = Field(60.0, gt=0, description="Timeout of one provider call.")

    strategy: Strategy = Field("parallel", description="How critiques are produced and applied.")
    planner: PlannerMode = Field("llm", description="How the critics of a turn are chosen.")
    critics: Annotated[list[Aspect], NoDecode] = Field(
        default_factory=lambda: ["factuality", "personalization", "coherence"],
        description="Critics the planner may choose from (comma-separated in the environment).",
    )
    max_rounds: int = Field(1, ge=1, le=5, description="Critique-and-merge rounds per turn.")

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
    log_level: str = Field("INFO", description="DEBUG shows message and persona text.")

    @field_validator("critics", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("critics")
    @classmethod
    def _known_and_unique(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one critic is needed")
        return list(dict.fromkeys(value))

    def model_for(self, role: Role) -> str:
        """The model name a role uses: its own setting, else the default."""
        return getattr(self, f"{role}_model") or self.model

    @property
    def sqlite_path(self) -> Path:
        return self.home / "threads.sqlite"

    @property
    def checkpointer_kind(self) -> Literal["sqlite", "postgres", "memory"]:
        if self.checkpointer != "auto":
            return self.checkpointer
        url = self.database_url or ""
        return "postgres" if url.startswith(("postgres://", "postgresql://")) else "sqlite"
