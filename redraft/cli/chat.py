"""`redraft chat`: an interactive terminal chat on the real Refiner, to try it by hand.

Every turn shows how the reply was made: the draft, the plan, the critiques, the diff, the time
and the tokens. Slash commands change the persona, the knowledge and the strategy between turns.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any, get_args

from langchain_core.language_models import BaseChatModel
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import ValidationError
from rich.console import Console
from rich.panel import Panel
from rich.status import Status
from rich.table import Table
from rich.text import Text

from redraft.cli.render import turn_view
from redraft.config import PlannerMode, RefinerConfig, Role, Strategy
from redraft.errors import RefineError, describe_validation_error
from redraft.llm.calls import ModelNotConfiguredError, Models
from redraft.refiner import DraftWritten, PlanMade, Refiner, TurnDone
from redraft.state import RefineResult

USER_ID = "playground"
PROMPT = "[bold cyan]you ›[/] "

# Where the environment says nothing: one session's thread needs no database, and log lines
# would tear through the chat.
PLAYGROUND_DEFAULTS: dict[str, Any] = {"checkpointer": "memory", "log_level": "WARNING"}

NO_MODEL = """\
redraft chat talks to a real chat model, and none is configured.

OpenAI:
  export OPENAI_API_KEY=sk-...          (REDRAFT_MODEL picks the model, default gpt-4o-mini)

Any OpenAI-compatible server, local ones need no key:
  Ollama     export OPENAI_BASE_URL=http://localhost:11434/v1 REDRAFT_MODEL=llama3.1
  vLLM       export OPENAI_BASE_URL=http://localhost:8000/v1 REDRAFT_MODEL=<served model>
  llama.cpp  export OPENAI_BASE_URL=http://localhost:8080/v1    (llama-server)
If the server rejects JSON-schema outputs: export REDRAFT_STRUCTURED_OUTPUT=function_calling

To watch redraft work offline first, with a scripted model: redraft demo"""

HELP = (
    ("/persona <fact>", "add a fact about you; /persona lists them, /persona clear forgets them"),
    ("/knowledge <passage>", "add an evidence passage; /knowledge lists, /knowledge clear"),
    ("/strategy <name>", f"how replies are refined: {' | '.join(get_args(Strategy))}"),
    ("/planner <mode>", f"how critics are chosen: {' | '.join(get_args(PlannerMode))}"),
    ("/trace", "the last turn's full result as JSON"),
    ("/reset", "start a new conversation (persona and knowledge stay)"),
    ("/help", "this list"),
    ("/quit", "leave (Ctrl-D and Ctrl-C work too)"),
)


def default_config() -> RefinerConfig:
    """The environment's settings, with the playground's defaults where it sets nothing."""
    config = RefinerConfig()
    update = {k: v for k, v in PLAYGROUND_DEFAULTS.items() if k not in config.model_fields_set}
    return config.model_copy(update=update)


def model_problem(config: RefinerConfig) -> Text | Panel | None:
    """Why no turn could run with this config, found before the first turn rather than in it."""
    models = Models()
    for role in get_args(Role):
        try:
            models.for_role(role, config)
        except ModelNotConfiguredError:
            return Panel(
                Text(NO_MODEL),
                title="no model configured",
                title_align="left",
                border_style="yellow",
            )
        except Exception as exc:  # e.g. the integration package of `provider:model` is missing
            name = config.model_for(role)
            return Text(f"cannot set up the {role} model {name!r}: {exc}", style="red")
    return None


class Chat:
    """One session: a thread, the persona and knowledge sent with every turn, the last result."""

    def __init__(
        self,
        config: RefinerConfig,
        model: BaseChatModel | None,
        console: Console,
        runner: asyncio.Runner,
    ) -> None:
        self.config = config
        self.console = console
        self.persona: list[str] = []
        self.knowledge: list[str] = []
        self.last: RefineResult | None = None
        self.thread_id = new_thread_id()
        self._model = model
        self._runner = runner
        # A memory saver lives as long as its Refiner; one per session keeps the conversation
        # when /strategy or /planner rebuilds the Refiner.
        self._checkpointer = InMemorySaver() if config.checkpointer_kind == "memory" else None
        self.refiner = self._build()
        self._commands: dict[str, Callable[[str], None]] = {
            "persona": lambda arg: self._edit_list(self.persona, "persona fact", "f", arg),
            "knowledge": lambda arg: self._edit_list(self.knowledge, "passage", "p", arg),
            "strategy": lambda arg: self._switch("strategy", Strategy, arg),
            "planner": lambda arg: self._switch("planner", PlannerMode, arg),
            "trace": self._trace,
            "reset": self._reset,
            "help": lambda arg: self.console.print(help_table()),
        }

    def _build(self) -> Refiner:
        return Refiner(self.config, model=self._model, checkpointer=self._checkpointer)

    def close(self) -> None:
        self._runner.run(self.refiner.aclose())

    def settings_line(self) -> Text:
        model = self.config.model if self._model is None else type(self._model).__name__
        return Text(
            f"model {model} · strategy {self.config.strategy} · planner {self.config.planner} · "
            f"thread {self.thread_id}",
            style="dim",
        )

    # ── input ──────────────────────────────────────────────────────────────────────────

    def handle(self, line: str) -> bool:
        """Run one line of input; False when the user asked to quit."""
        if not line.startswith("/"):
            self.turn(line)
            return True
        name, _, arg = line[1:].partition(" ")
        if name == "quit":
            return False
        command = self._commands.get(name)
        if command is None:
            self.console.print(Text(f"unknown command {line.split()[0]}", style="yellow"))
            self.console.print(help_table())
        else:
            command(arg.strip())
        return True

    def turn(self, text: str) -> None:
        request = {
            "messages": [{"role": "user", "content": text}],
            "user_id": USER_ID,
            "thread_id": self.thread_id,
            "persona": list(self.persona),
            "knowledge": list(self.knowledge),
        }
        try:
            with self.console.status("drafting…") as status:
                result = self._runner.run(self._refine(request, status))
        except RefineError as exc:
            self.console.print(Text(f"✗ {' '.join(str(exc).split())}", style="red"))
            return
        except ValidationError as exc:
            self.console.print(Text(f"✗ {describe_validation_error(exc)}", style="red"))
            return
        self.last = result
        self.console.print(turn_view(result, show_draft=True))

    async def _refine(self, request: dict[str, Any], status: Status) -> RefineResult:
        """The turn, narrating its progress: local models can take a while per step."""
        result = None
        async for event in self.refiner.astream(request):
            if isinstance(event, DraftWritten):
                status.update("draft written, planning…")
            elif isinstance(event, PlanMade):
                aspects = ", ".join(event.plan.aspects)
                status.update(f"critics: {aspects}…" if aspects else "no critic needed…")
            elif isinstance(event, TurnDone):
                result = event.result
        assert result is not None  # astream ends with TurnDone or raises
        return result

    # ── commands ───────────────────────────────────────────────────────────────────────

    def _edit_list(self, items: list[str], noun: str, id_prefix: str, arg: str) -> None:
        """`/persona` and `/knowledge`: list, clear, or add (ids match what critics cite)."""
        if arg == "clear":
            items.clear()
            self.console.print(f"{noun}s cleared")
        elif arg:
            items.append(arg)
            self.console.print(f"{noun} {id_prefix}{len(items)} added")
        elif not items:
            self.console.print(Text(f"no {noun}s yet", style="dim"))
        else:
            listing = Text()
            for n, item in enumerate(items, 1):
                listing.append(f"{id_prefix}{n}  ", style="bold cyan")
                listing.append(f"{item}\n")
            listing.rstrip()
            self.console.print(listing)

    def _switch(self, field: str, kind: Any, arg: str) -> None:
        """`/strategy` and `/planner`: a new Refiner on the same thread."""
        choices = get_args(kind)
        if arg not in choices:
            current = getattr(self.config, field)
            self.console.print(f"{field} is {current}; choose one of: {', '.join(choices)}")
            return
        self.close()
        self.config = self.config.model_copy(update={field: arg})
        self.refiner = self._build()
        self.console.print(self.settings_line())

    def _trace(self, arg: str) -> None:
        if self.last is None:
            self.console.print(Text("no turn yet", style="dim"))
        else:
            self.console.print_json(self.last.model_dump_json())

    def _reset(self, arg: str) -> None:
        self.thread_id = new_thread_id()
        self.last = None
        self.console.print(
            f"new conversation (kept: persona facts {len(self.persona)}, "
            f"passages {len(self.knowledge)})"
        )
        self.console.print(self.settings_line())


def new_thread_id() -> str:
    return f"chat-{uuid.uuid4().hex[:8]}"


def help_table() -> Table:
    table = Table.grid(padding=(0, 2))
    for usage, description in HELP:
        table.add_row(Text(usage, style="bold"), description)
    return table


def run_chat(
    config: RefinerConfig | None = None,
    *,
    model: BaseChatModel | None = None,
    console: Console | None = None,
    input_fn: Callable[[str], str] | None = None,
) -> int:
    """Chat until /quit, EOF or Ctrl-C; returns the exit code (1 when no model is configured).

    `model` replaces the configured models (e.g. a ScriptedChatModel); `input_fn` replaces
    `console.input` (it gets the prompt as rich markup), so tests can type.
    """
    console = console or Console()
    config = config or default_config()
    if model is None and (problem := model_problem(config)) is not None:
        console.print(problem)
        return 1
    read = input_fn or console.input
    # One event loop for the whole session: thread storage and clients stay bound to it, and
    # Ctrl-C during a turn cancels that turn before we leave.
    with asyncio.Runner() as runner:
        chat = Chat(config, model, console, runner)
        console.print(Text("redraft chat", style="bold magenta"))
        console.print(chat.settings_line())
        console.print(Text("Type a message, or /help for commands.", style="dim"))
        try:
            while True:
                line = read(PROMPT).strip()
                if line and not chat.handle(line):
                    break
        except (EOFError, KeyboardInterrupt):
            console.print()
        finally:
            chat.close()
    return 0
