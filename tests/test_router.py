"""The embedding router's rules, with the real all-MiniLM-L6-v2 (loaded once per session)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings
from pydantic import ValidationError

from redraft.config import RefinerConfig
from redraft.routing import Router, get_router
from redraft.routing.examples import ExamplesError, load_examples, packaged_examples
from redraft.routing.router import ASPECTS, CHOSEN_AT
from redraft.routing.signals import overlap
from tests.conftest import assistant, user

KNOWLEDGE = ["The Eiffel Tower was completed in 1889 and is 330 metres tall."]


@pytest.fixture(scope="module")
def router(local_embeddings) -> Router:
    router = get_router(RefinerConfig())
    router.load()
    return router


def test_every_aspect_gets_a_score_and_a_reason(router):
    route = router.route([user("hey, how's it going?")], draft="Great, thanks! And you?")
    assert set(route.scores) == set(route.reasons) == set(ASPECTS)
    assert all(0.0 <= s <= 1.0 for s in route.scores.values())
    assert all(route.reasons[a] and "\n" not in route.reasons[a] for a in ASPECTS)
    assert route.aspects == [
        a for a in sorted(ASPECTS, key=lambda a: -route.scores[a]) if route.scores[a] >= CHOSEN_AT
    ]


def test_small_talk_needs_no_critic(router):
    route = router.route([user("hey, how's it going?")], draft="Great, thanks! And you?")
    assert route.aspects == []
    assert route.sensitive is False and route.domain is None


def test_knowledge_passages_and_stated_facts_call_for_factuality(router):
    route = router.route(
        [user("When was the Eiffel Tower finished?")],
        knowledge=KNOWLEDGE,
        draft="It was finished in 1899.",
    )
    assert route.aspects == ["factuality"]
    assert "1 knowledge passage" in route.reasons["factuality"]
    assert "1899" in route.reasons["factuality"]


def test_numbers_dates_and_names_in_the_draft_call_for_factuality(router):
    messages = [user("Write a caption for my holiday photo.")]
    vague = router.route(messages, draft="Sun, sea and good company.")
    specific = router.route(messages, draft="Sunset over Santorini, 14 August 2023.")
    assert "factuality" not in vague.aspects
    assert "factuality" in specific.aspects
    assert "Santorini" in specific.reasons["factuality"]


def test_personalization_needs_something_known_about_the_user(router):
    messages = [user("What should I cook for dinner tonight?")]
    draft = "How about a mushroom risotto?"
    known = router.route(messages, persona=["Is vegetarian.", "Loves Italian food."], draft=draft)
    unknown = router.route(messages, draft=draft)
    assert "personalization" in known.aspects
    assert "personalization" not in unknown.aspects
    assert unknown.reasons["personalization"] == "nothing is known about the user"


@pytest.mark.parametrize(
    ("query", "persona"),
    [
        ("Recommend a podcast.", ["Commutes by train for an hour.", "Interested in history."]),
        ("Any album recommendations?", ["Loves jazz piano.", "Listens while working."]),
        ("What should I wear to the gig on Saturday?", ["Dresses minimal, mostly black."]),
    ],
)
def test_a_request_for_a_choice_that_turns_on_taste_gets_personalization(router, query, persona):
    """However the classifier reads the request (often as a task), known facts that bear on a
    recommendation are checked."""
    route = router.route([user(query)], persona=persona, draft="Here is one you could try.")
    assert "personalization" in route.aspects
    assert route.features["choice"] == 1.0


def test_a_choice_cue_is_the_request_not_any_mention_of_choosing():
    from redraft.routing.signals import asks_for_choice

    for query in [
        "What should I read next?",
        "Any album recommendations?",
        "Which laptop would suit me?",
        "Pick a museum for me in London.",
        "Is there a sport I'd enjoy?",
        "what podcast would I like",
        "Help me choose a weekend trip from Madrid.",
    ]:
        assert asks_for_choice(query), query
    for query in [
        "When was the Eiffel Tower built?",
        "Convert 350 Fahrenheit to Celsius.",
        "What should I do first?",
        "How do I ask my manager for a raise?",
    ]:
        assert asks_for_choice(query) is None, query


def test_persona_facts_that_do_not_bear_on_a_question_add_no_personalization(router):
    route = router.route(
        [user("What's the chemical symbol for gold?")],
        persona=["Likes jazz.", "Works in retail."],
        draft="Au.",
    )
    assert "personalization" not in route.aspects


def test_what_the_user_said_earlier_counts_as_known(router):
    messages = [
        user("I'm allergic to peanuts."),
        assistant("Thanks, I'll keep that in mind."),
        user("Can you suggest a snack for my flight?"),
    ]
    route = router.route(messages, draft="Try a bag of peanuts, they travel well.")
    assert "personalization" in route.aspects


def test_coherence_only_when_there_is_an_earlier_reply_to_follow(router):
    first = router.route([user("What's the capital of Australia?")], draft="Canberra.")
    follow_up = router.route(
        [
            user("What's the capital of Australia?"),
            assistant("The capital of Australia is Canberra."),
            user("And what's its population?"),
        ],
        draft="Sydney has about 5 million people.",
    )
    assert "coherence" not in first.aspects
    assert first.reasons["coherence"].startswith("first turn")
    assert "coherence" in follow_up.aspects and "'And'" in follow_up.reasons["coherence"]


SENSITIVE = [
    ("My husband just told me he's leaving me for someone else.", "Relationship"),
    ("I was fired today after ten years at the company.", "Career"),
    ("I'm buried in credit card debt and collectors call every day.", "Financial"),
    ("All my friends stopped talking to me after the party and I feel so alone.", "Social"),
    ("I keep having panic attacks and I can't breathe.", "Health"),
    ("I have to move to a new country next month and I'm terrified of starting over.", "Life"),
    ("I failed all my exams and my parents will be furious.", "Education"),
]


@pytest.mark.parametrize(("query", "domain"), SENSITIVE)
def test_sensitive_queries_get_safety_and_their_domain(router, query, domain):
    route = router.route([user(query)], draft="I'm sorry you're going through this.")
    assert route.sensitive and "safety" in route.aspects
    assert route.domain == domain
    assert next(iter(route.domain_scores)) == domain
    assert sum(route.domain_scores.values()) == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize(
    "query",
    [
        "How many calories are in an avocado?",
        "What is the average salary of a dentist in Germany?",
        "How do I calculate interest on a savings account?",
    ],
)
def test_questions_that_merely_mention_money_work_or_health_are_not_sensitive(router, query):
    # With a draft stating a figure: without one, "How do I calculate interest ...?" sits on the
    # line between a request for facts and a task (its factuality score 0.499-0.51 by build).
    route = router.route([user(query)], draft="It comes to about 20 a year, or 2 percent.")
    assert not route.sensitive and route.domain is None
    assert "safety" not in route.aspects and "factuality" in route.aspects


def test_an_earlier_sensitive_turn_keeps_the_conversation_sensitive(router):
    earlier = [user("I was laid off yesterday."), assistant("I'm sorry. How are you coping?")]
    follow_up = router.route([*earlier, user("What should I do first?")])
    thanks = router.route([*earlier, user("Thanks, that's all for now!")])
    assert follow_up.sensitive and follow_up.domain == "Career"
    assert "earlier turn" in follow_up.reasons["safety"]
    assert not thanks.sensitive  # small talk after it is not


def test_system_messages_are_not_the_query(router):
    route = router.route(
        [user("How many calories are in an avocado?"), {"role": "system", "content": "Be brief."}]
    )
    assert "factuality" in route.aspects


def test_extra_examples_teach_the_classifier(local_embeddings):
    query = "My sourdough starter died while I was away."
    plain = get_router(RefinerConfig()).classify([query])[0]
    grief = [
        "My old sourdough starter died and I feel like I lost a friend.",
        "My bread starter that my late grandmother gave me died.",
        "I can't stop crying because the starter from my mother is gone.",
        "The sourdough culture my dad kept for thirty years died on my watch.",
        "I killed the starter my family kept for generations and I'm devastated.",
    ]
    extra = [{"text": t, "label": "sensitive", "domain": "Relationship"} for t in grief]
    config = RefinerConfig(extra_examples=extra)
    taught = get_router(config)
    assert taught is not get_router(RefinerConfig())
    assert len(taught.examples) == len(packaged_examples()) + len(extra)
    after = taught.classify([query])[0]
    assert after["sensitive:Relationship"] > plain["sensitive:Relationship"] + 0.2


def test_extra_examples_file_is_read_and_bad_lines_are_named(tmp_path):
    good = tmp_path / "mine.jsonl"
    good.write_text(json.dumps({"text": "What's the weather like?", "label": "knowledge"}) + "\n")
    assert load_examples(RefinerConfig(extra_examples_file=good))[-1].text == (
        "What's the weather like?"
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"text": "ok", "label": "chitchat"})
        + "\n"
        + json.dumps({"text": "I lost my job", "label": "sensitive"})
        + "\n"
    )
    with pytest.raises(ExamplesError, match=r"bad\.jsonl line 2: .*domain is required"):
        load_examples(RefinerConfig(extra_examples_file=bad))
    with pytest.raises(ExamplesError, match="cannot read"):
        load_examples(RefinerConfig(extra_examples_file=tmp_path / "missing.jsonl"))


def test_extra_examples_in_the_config_are_validated():
    with pytest.raises(ValidationError, match="domain"):
        RefinerConfig(extra_examples=[{"text": "hi", "label": "chitchat", "domain": "Health"}])
    with pytest.raises(ValidationError, match="label"):
        RefinerConfig(extra_examples=[{"text": "hi", "label": "greeting"}])


def test_packaged_examples_cover_every_label_and_domain():
    examples = packaged_examples()
    labels = {e.label for e in examples}
    domains = {e.domain for e in examples if e.domain}
    assert labels == {"chitchat", "knowledge", "task", "personal", "sensitive"}
    assert len(domains) == 7
    assert len({e.text for e in examples}) == len(examples)


def test_the_routing_benchmark_set_is_not_in_the_training_examples():
    texts = {e.text.lower() for e in packaged_examples()}
    with open("benchmarks/data/routing_set.jsonl", encoding="utf-8") as cases:
        queries = [json.loads(line)["case"]["messages"][-1]["content"] for line in cases]
    assert len(queries) >= 200
    assert not [q for q in queries if q.lower() in texts]


def test_a_text_being_embedded_is_waited_for_not_embedded_twice():
    """The prefetch during the draft and the plan's route may ask for the same texts at once."""

    class SlowEmbeddings(Embeddings):
        def __init__(self) -> None:
            self.embedded: list[str] = []

        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            self.embedded += texts
            time.sleep(0.2)
            return [[float(len(t)), 1.0] for t in texts]

        def embed_query(self, text: str) -> list[float]:
            return self.embed_documents([text])[0]

    embeddings = SlowEmbeddings()
    router = Router(embeddings, [])
    results: list[dict] = []
    threads = [
        threading.Thread(target=lambda: results.append(router._embed(["query", "fact"])))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(embeddings.embedded) == ["fact", "query"]
    assert all(list(found["query"]) == [5.0, 1.0] for found in results) and len(results) == 3


def labelled_messages(split: str) -> list[str]:
    with open(f"benchmarks/data/routing_labelled_{split}.jsonl", encoding="utf-8") as cases:
        return [m["content"] for line in cases for m in json.loads(line)["messages"]]


# Part 4 (e306097) was committed with 5 of its 60 cases copying a classifier example (one exactly:
# "How many bones are in the adult human body?"); found by these tests after its one run, left to
# its author to rewrite. Strict: the mark fails once they are rewritten, so it is then removed.
PART_4_HAS_COPIES = pytest.mark.xfail(
    strict=True, reason="held-out part 4 has copies of classifier examples (see BENCHMARKS.md)"
)
SPLITS = [
    "dev",
    "heldout",
    "heldout2",
    "heldout3",
    pytest.param("heldout4", marks=PART_4_HAS_COPIES),
]


@pytest.mark.parametrize("split", SPLITS)
def test_the_labelled_routing_set_is_not_in_the_training_examples(split):
    texts = {e.text.lower() for e in packaged_examples()}
    found = labelled_messages(split)
    assert len(found) >= 50
    assert not [text for text in found if text.lower() in texts]


@pytest.mark.parametrize("split", SPLITS[3:])
def test_held_out_parts_3_and_4_have_no_near_copy_of_a_training_example(split):
    """Near copy: each text shares >= 60 % of its content words with the other (parts 3 and 4
    were written after parts 1 and 2, whose short follow-ups predate this check)."""
    examples = [e.text for e in packaged_examples()]
    near = [
        (text, example)
        for text in labelled_messages(split)
        for example in examples
        if min(overlap(text, example), overlap(example, text)) >= 0.6
    ]
    assert not near


def test_the_router_encodes_with_an_int8_copy_close_to_full_precision(local_embeddings):
    from redraft.embeddings import LocalEmbeddings
    from redraft.routing.encoder import Int8LocalEmbeddings
    from redraft.routing.router import router_embeddings

    assert isinstance(router_embeddings(RefinerConfig()), Int8LocalEmbeddings)
    assert isinstance(router_embeddings(RefinerConfig(router_int8=False)), LocalEmbeddings)
    texts = ["Where should I stay in Lisbon?", "I lost my job and I'm scared.", "hi"]
    int8 = np.array(Int8LocalEmbeddings().embed_documents(texts))
    full = np.array(local_embeddings.embed_documents(texts))
    assert np.allclose(np.linalg.norm(int8, axis=1), 1.0, atol=1e-4)
    assert (int8 * full).sum(axis=1).min() > 0.85
    assert Int8LocalEmbeddings().embed_documents([]) == []
