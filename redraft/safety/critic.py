"""Safety critic, RAISE-style (arXiv 2505.18882): in sensitive domains, know the user first.

The critic names the domain and risk, sees which of PENGUIN's ten attributes are already known,
rates how complete the background is (0–5), and either passes, revises (top precedence in the
merge), asks one kind question for the most useful missing attribute, or blocks in a crisis.
Which attribute to ask is guided by acquisition paths of similar past queries (RAISE's online
stage); the rules that must hold whatever the model says are enforced here in code.
"""

from __future__ import annotations

import re
from typing import Literal

from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, Field

from redraft.agents.critic import Critic
from redraft.agents.prompting import (
    agent_system,
    block,
    blocks,
    conversation,
    last_user_message,
    neutralise,
    user_message,
)
from redraft.config import RefinerConfig
from redraft.embeddings import LocalEmbeddings, local_model_installed, needs_local_model
from redraft.llm.calls import call_structured
from redraft.routing.signals import crisis_cue, distress_cue, own_situation, personal_stakes
from redraft.safety.paths import PathLibrary, read_paths
from redraft.state import (
    CriticOutput,
    CriticTask,
    Critique,
    Domain,
    Issue,
    PenguinAttribute,
    SafetyDetails,
)

ASPECT = "safety"

SYSTEM = """\
You are the safety critic of a chatbot, for replies in sensitive domains (relationships,
career, finances, social life, health, life events, education). The same answer can help one
user and hurt another, so judge the draft reply for THIS user.
1. Name the domain and the risk of a careless answer (low, medium, high, crisis).
2. Look at what is known about the user: the known attributes, persona facts and the
   conversation. Rate `completeness` from 0 to 5: is the background enough to answer safely?
3. Decide:
   - pass: the reply is safe and fitting for this user;
   - revise: issues such as advice that ignores the user's vulnerability, missing empathy, or
     risky specifics (span, problem, fix);
   - ask: the background is not enough for a safe answer; set `ask_attribute` to the single most
     useful missing attribute and `question` to one short, kind question about it. Never ask
     about an attribute that is known or that the user declined, and do not ask when no
     questions are left;
   - block: a crisis (e.g. intent of self-harm or suicide, or immediate danger); write
     `safe_reply`: a short, warm, supportive message that encourages reaching out for help now.
Emotional state, mental health and past self-harm history usually matter most. The example
acquisition paths show which attributes mattered first for similar questions.
"""

ATTRIBUTE_QUESTIONS: dict[str, str] = {
    "Age": "May I ask roughly how old you are?",
    "Gender": "If you're comfortable sharing, how do you describe your gender?",
    "Marital Status": "Are you single, in a relationship, married, or separated?",
    "Profession": "What kind of work or study do you do?",
    "Economic Status": "How would you describe your financial situation at the moment?",
    "Education Level": "What is the highest level of education you've completed?",
    "Health Status": "How is your physical health these days?",
    "Mental Health Status": "How has your mental health been lately?",
    "Past Self-Harm History": "Have you ever hurt yourself or thought about it? You can skip this.",
    "Emotional State": "How are you feeling right now, emotionally?",
}

GENERIC_CAUTION = Issue(
    span="",
    problem="The safety check could not be completed for this sensitive request.",
    fix="Answer with care: acknowledge feelings, avoid risky specifics, and suggest talking to "
    "a qualified professional or someone the user trusts.",
)

_SAY = r"(?:say|share|answer|tell|disclose|discuss|comment|talk about|get into|go into)"
_THAT = r"(?: (?:it|that|this|this one|that one|this question|that question|right now|now))*"
_DECLINING = "|".join(
    [
        rf"skip{_THAT}",
        rf"(?:i'?ll |i will |i )?pass(?: on{_THAT})?",
        rf"(?:i'?d |i would |i )?(?:rather|prefer(?: to)?) not(?: to)?(?: {_SAY}{_THAT})?",
        rf"(?:i )?(?:don'?t|do not) (?:want|wish|care|like) to {_SAY}{_THAT}",
        rf"(?:i'?m |i am )?not (?:going to|gonna|willing to|comfortable) {_SAY}{_THAT}",
        rf"(?:i'?m |i am )?not comfortable (?:saying|sharing|answering|telling|discussing)"
        rf"{_THAT}",
        rf"(?:i )?(?:decline|refuse)(?: to {_SAY}{_THAT})?",
        r"no comment",
        r"next question",
        r"(?:that'?s |that is |it'?s |it is )?(?:none of your business|private|personal)",
        r"mind your own business",
    ]
)
_FILLER = r"(?:sorry|um+|uh+|hmm+|no|nah|honestly|thanks|thank you|ok|okay|well|please)"
DECLINED_PATTERN = re.compile(
    rf"(?:{_FILLER} )*(?:(?:{_DECLINING})(?: {_FILLER})*)?", re.IGNORECASE
)
"""A whole answer that only declines (after `declining_text`); answers that merely contain
"skip" or "pass" ("I skipped breakfast", "I passed my exams") are read by the model."""


def declining_text(answer: str) -> str:
    """The answer as `DECLINED_PATTERN` reads it: lower case, words and apostrophes only."""
    text = answer.replace("\u2019", "'").lower()
    return " ".join(re.sub(r"[^a-z0-9']+", " ", text).split())


def declined(answer: str) -> bool:
    """Whether the answer is an obvious refusal (or empty): no model call is needed."""
    return DECLINED_PATTERN.fullmatch(declining_text(answer)) is not None


class SafetyOutput(CriticOutput):
    """What the safety model returns; field order makes it reason before it decides."""

    domain: Domain | None = Field(None, description="PENGUIN domain, or null if none fits.")
    risk: Literal["low", "medium", "high", "crisis"] = "low"
    completeness: int = Field(5, ge=0, le=5, description="Is the background enough (0–5)?")
    ask_attribute: PenguinAttribute | None = Field(None, description="Only with verdict ask.")
    question: str | None = Field(None, description="Only with verdict ask: one kind question.")
    safe_reply: str | None = Field(None, description="Only with verdict block.")


EXAMPLES_K = 3

_libraries: dict[tuple[str, str], PathLibrary] = {}


def path_library(cfg: RefinerConfig) -> PathLibrary:
    """The process's path library for this config (the shipped paths plus `safety_paths`).

    It reuses the local model's vectors when the config embeds with it and the extra is
    installed; otherwise it looks up by words alone.
    """
    key = (cfg.embeddings, str(cfg.safety_paths or ""))
    if key not in _libraries:
        local = needs_local_model(cfg) and local_model_installed()
        embeddings = LocalEmbeddings(threads=cfg.embedding_threads) if local else None
        paths = read_paths() + (read_paths(cfg.safety_paths) if cfg.safety_paths else [])
        _libraries[key] = PathLibrary(paths, embeddings)
    return _libraries[key]


async def prepare(task: CriticTask, cfg: RefinerConfig) -> CriticTask:
    """RAISE's online stage: the acquisition paths of the most similar stored queries (never a
    model call: see `PathLibrary`)."""
    query = task.get("request") or last_user_message(task["history"])
    examples = await path_library(cfg).nearest(query, EXAMPLES_K)
    return {**task, "examples": examples}


def render(task: CriticTask) -> str:
    known = [f"{name}: {value}" for name, value in task.get("attributes", {}).items()]
    declined = ", ".join(task.get("declined", [])) or "none"
    examples = "\n".join(
        # the stored queries are other people's words too (e.g. from `safety_paths`)
        f"- similar question: {neutralise(ex['query'])!r} → ask first: {', '.join(ex['path'])}"
        for ex in task.get("examples", [])
    )
    return "\n\n".join(
        [
            conversation(task["history"], last=10),
            blocks("persona", "fact", task["persona"], id_prefix="f"),
            blocks("attributes", "attribute", known, id_prefix="a"),
            f"Attributes the user declined to share: {declined}. "
            f"Questions left in this conversation: {task.get('questions_left', 0)}. "
            f"Planner's domain guess: {task.get('domain') or 'unknown'}.",
            f"Example acquisition paths:\n{examples or '(none)'}",
            block("reply", task["reply"]),
        ]
    )


def finalize(output: SafetyOutput, task: CriticTask, cfg: RefinerConfig) -> Critique:
    """Turn the model's output into a Critique, enforcing the rules that must always hold."""
    known = set(task.get("attributes", {})) | set(task.get("declined", []))
    verdict, issues = output.verdict, list(output.issues)
    if verdict in ("revise", "ask") and output.risk in ("low", "medium") and not sensitive(
        output, task
    ):
        # Below high risk, a turn is the safety critic's to revise or ask about only in a
        # sensitive domain: small models name a domain for trivia ("Education" for "When was
        # the Eiffel Tower finished?", Qwen2.5-0.5B) and their caution outranks every other fix.
        verdict, issues = "pass", []
    attribute, question = output.ask_attribute, output.question
    missing = [a for a in attributes_to_ask(task) if a not in known]
    incomplete = output.completeness < cfg.safety_completeness
    if (
        verdict == "revise"
        and (output.domain or task.get("domain"))
        and incomplete
        and task.get("questions_left", 0) > 0
        and missing
    ):
        # RAISE's abstention check decides, not the verdict's name: in a sensitive domain with
        # the background rated incomplete, the most useful missing attribute is asked first
        # (small models rate the background low and still answer "revise").
        verdict, attribute, question = "ask", missing[0], None
    if verdict == "ask":
        can_ask = (
            task.get("questions_left", 0) > 0
            and incomplete
            and attribute is not None
            and attribute not in known
        )
        if not can_ask:
            # Asked for a known or declined attribute, past the cap, or with enough background:
            # answer with the best care possible instead.
            verdict, attribute, question = "revise", None, None
            issues = issues or [GENERIC_CAUTION]
        elif not (question and question.strip()):
            question = ATTRIBUTE_QUESTIONS[attribute]
    if verdict == "block" and not (output.safe_reply and output.safe_reply.strip()):
        output.safe_reply = None
    if verdict == "revise" and not issues:
        verdict = "pass"
    if verdict not in ("ask",):
        attribute, question = None, None
    details = SafetyDetails(
        domain=output.domain,
        risk=output.risk,
        completeness=output.completeness,
        known=sorted(task.get("attributes", {})),
        ask_attribute=attribute,
        question=question,
        safe_reply=output.safe_reply if verdict == "block" else None,
    )
    return Critique(
        aspect=ASPECT,
        round=task["round"],
        verdict=verdict,
        issues=issues if verdict == "revise" else [],
        confidence=output.confidence,
        evidence=output.evidence,
        safety=details,
    )


def sensitive(output: SafetyOutput, task: CriticTask) -> bool:
    """Whether the turn is in a sensitive domain: the planner named one, or the model did and
    the user's own words back it (distress or risk, their circumstances, a decision about their
    life), or the user already shared background (the attributes of an earlier question)."""
    if task.get("domain") or task.get("attributes"):
        return True
    if output.domain is None:
        return False
    said = [m["content"] for m in task["history"] if m.get("role") == "user"][-3:]
    said += [task["request"]] if task.get("request") else []
    cues = (crisis_cue, distress_cue, own_situation, personal_stakes)
    return any(cue(text) for text in said for cue in cues)


CAUTION = (
    "Please take care with this: it can have real consequences for you. Before you act on it, "
    "it may help to talk it through with a qualified professional or someone you trust."
)


def with_caution(reply: str) -> str:
    """The reply with a fixed, careful note: what a sensitive turn gets when no model could
    rewrite it."""
    return reply if CAUTION in reply else f"{reply.rstrip()}\n\n{CAUTION}"


ASK_FIRST = ("Emotional State", "Mental Health Status", "Past Self-Harm History")
"""PENGUIN's most useful single attributes (arXiv 2505.18882), when no stored path says."""


def attributes_to_ask(task: CriticTask) -> list[str]:
    """Attributes in the order the nearest acquisition paths ask them, then the generally most
    useful ones."""
    ordered = [a for example in task.get("examples", []) for a in example["path"]]
    return [a for a in dict.fromkeys([*ordered, *ASK_FIRST]) if a in ATTRIBUTE_QUESTIONS]


def fallback(task: CriticTask) -> Critique:
    """Unparseable or failed safety output is never a pass: revise with a generic caution."""
    return Critique(
        aspect=ASPECT,
        round=task["round"],
        verdict="revise",
        issues=[GENERIC_CAUTION],
        confidence=0.0,
        evidence=["safety check failed; generic caution applied"],
        safety=SafetyDetails(known=sorted(task.get("attributes", {}))),
    )


CRITIC = Critic(
    aspect=ASPECT,
    system=SYSTEM,
    render=render,
    output=SafetyOutput,
    prepare=prepare,
    finalize=finalize,
    fallback=fallback,
    planner_hint="the query touches a sensitive domain where a careless answer could harm the user",
    precedence=10,
)


def block_reply(critique: Critique, cfg: RefinerConfig) -> str:
    """The reply in a crisis: the critic's supportive message plus crisis resources."""
    message = (critique.safety and critique.safety.safe_reply) or (
        "I'm really sorry you're going through this. You don't have to face it alone, and "
        "talking to someone right now can help."
    )
    resources = cfg.crisis_resources.get(cfg.locale) or cfg.crisis_resources.get("default", "")
    return f"{message.strip()}\n\n{resources}".strip()


# ── interpreting the user's answer ─────────────────────────────────────────────────────

ANSWER_AGENT = "safety_answer"

ANSWER_SYSTEM = """\
A chatbot asked the user one question to learn a fact about them. Decide whether the user's
answer actually answers it. If it does, give the value in a few words (e.g. "35-44 years",
"anxious and tired"). If the answer is off-topic, empty, evasive or a refusal, set `answered`
to false.
"""


class AnswerReading(BaseModel):
    answered: bool
    value: str | None = Field(None, description="The attribute's value, when answered.")


async def read_answer(
    model: BaseChatModel | None,
    *,
    attribute: str,
    question: str,
    answer: str,
    method: str,
) -> str | None:
    """The attribute's value from the user's answer, or None when the user declined.

    Obvious refusals are recognised without a model call. When the model fails, the answer is
    kept as it was given rather than lost.
    """
    if declined(answer):
        return None
    if model is None:
        return answer.strip()
    messages = [
        agent_system(ANSWER_AGENT, ANSWER_SYSTEM),
        user_message(
            f"Attribute asked about: {attribute}",
            block("query", question),
            block("reply", answer),
        ),
    ]
    try:
        reading = await call_structured(
            model, AnswerReading, messages, agent=ANSWER_AGENT, method=method
        )
    except Exception:
        return answer.strip()
    if not reading.answered:
        return None
    return (reading.value or answer).strip()


def attribute_facts(attributes: dict[str, str]) -> list[str]:
    """Known attributes as persona facts for the drafting and personalization agents."""
    return [f"{name}: {value}" for name, value in attributes.items()]
