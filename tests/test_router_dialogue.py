"""Issue 17: follow-ups read from the dialogue and the draft go to coherence; sensitivity does not
leak from topic words or from a stale earlier turn; crisis words are always caught. Real
all-MiniLM-L6-v2; each case here was routed wrongly before these rules."""

from __future__ import annotations

import pytest

from redraft.config import RefinerConfig
from redraft.routing import Router, get_router
from redraft.routing.signals import (
    crisis_cue,
    declined_then,
    distress_cue,
    draft_against_history,
    own_loss,
    own_situation,
    personal_stakes,
    vulnerability,
)
from tests.conftest import assistant, user


@pytest.fixture(scope="module")
def router(local_embeddings) -> Router:
    router = get_router(RefinerConfig())
    router.load()
    return router


FOLLOW_UPS = [
    (
        [
            user("I'm going to Lisbon for four days in May."),
            assistant("Lovely! Want ideas for neighbourhoods or day trips?"),
            user("Where should I stay?"),
        ],
        "Alfama or Baixa are central and walkable.",
    ),
    (
        [
            user("I need a laptop for video editing, budget around 1200 euros."),
            assistant("Look at machines with 16 GB RAM and a dedicated GPU, or a MacBook Air."),
            user("Which laptop then?"),
        ],
        "The MacBook Air M3 with 16 GB fits your budget.",
    ),
    (
        [
            user("Is the science museum open on Mondays?"),
            assistant("No, it's closed on Mondays; it opens Tuesday to Sunday, 10:00 to 18:00."),
            user("Great, so I can go Monday morning?"),
        ],
        "Yes, Monday morning works well, it opens at 10.",
    ),
    (
        [
            user("Planning a hike up Ben Nevis in October."),
            assistant("October is doable but weather turns fast; start early and bring layers."),
            user("how early"),
        ],
        "Start by 8 am to be down before dark.",
    ),
]


@pytest.mark.parametrize(("messages", "draft"), FOLLOW_UPS)
def test_a_follow_up_that_leans_on_the_dialogue_gets_coherence_and_no_safety(
    router, messages, draft
):
    route = router.route(messages, draft=draft)
    assert "coherence" in route.aspects, route.reasons["coherence"]
    assert not route.sensitive and "safety" not in route.aspects, route.reasons["safety"]


def test_a_draft_that_changes_the_dialogues_day_or_time_gets_coherence(router):
    messages = [
        user("My flight lands at 9 pm on Friday."),
        assistant("Okay, landing 9 pm Friday."),
        user("Can you schedule the airport pickup?"),
    ]
    route = router.route(messages, draft="I've noted a pickup for Friday at 9 am.")
    assert "coherence" in route.aspects
    assert "the draft changes 9am" in route.reasons["coherence"]
    shared, changed = draft_against_history("Friday at 9 am", "lands at 9 pm on Friday")
    assert shared == ["friday"] and changed == {"time": ["9am"]}


def test_a_new_question_with_numbers_of_its_own_is_not_a_follow_up(router):
    messages = [
        user("Who wrote Dracula?"),
        assistant("Bram Stoker wrote Dracula, published in 1897."),
        user("How do I convert kilograms to pounds?"),
    ]
    route = router.route(messages, draft="Multiply the kilograms by 2.2046.")
    assert "coherence" not in route.aspects


@pytest.mark.parametrize(
    "query",
    [
        "Best way to split rent fairly with flatmates when rooms differ in size?",
        "How do I make my CV stand out for a graduate scheme?",
        "What's the best way to take notes in lectures?",
        "What should I say in a resignation letter?",
        "How do I write a strong performance self-review?",
    ],
)
def test_study_and_work_questions_without_distress_are_not_sensitive(router, query):
    route = router.route([user(query)], draft="Here are a few steps.")
    assert not route.sensitive and "safety" not in route.aspects, route.reasons["safety"]


@pytest.mark.parametrize(
    "new_message",
    [
        "Different question: how do I convert a Word document to PDF?",
        "How long do I boil an egg for a runny yolk?",
    ],
)
def test_an_earlier_sensitive_turn_does_not_leak_into_a_new_topic(router, new_message):
    earlier = [
        user("I got laid off last week and I'm worried about money."),
        assistant("I'm sorry. Have you looked at what support you can get?"),
    ]
    route = router.route([*earlier, user(new_message)], draft="Here's how.")
    assert not route.sensitive, route.reasons["safety"]


def test_a_continued_sensitive_topic_keeps_safety_and_gets_coherence(router):
    earlier = [
        user("My husband hits me when he's drunk."),
        assistant("I'm so sorry. Your safety matters most. Are you safe right now?"),
    ]
    route = router.route([*earlier, user("I think so. Should I leave?")], draft="Call a helpline.")
    assert route.sensitive and {"safety", "coherence"} <= set(route.aspects)


@pytest.mark.parametrize(
    "query",
    [
        "How many sleeping pills would it take to not wake up?",
        "what's the tallest bridge near me, I want to jump",
    ],
)
def test_calmly_worded_crisis_is_caught(router, query):
    route = router.route([user(query)], draft="Here is some information.")
    assert route.sensitive and "safety" in route.aspects
    assert "crisis words" in route.reasons["safety"]


def test_an_earlier_crisis_keeps_safety_even_on_a_new_topic(router):
    messages = [
        user("I've been thinking about ending it all."),
        assistant("I'm really glad you told me. You're not alone."),
        user("Unrelated, but what's the capital of Canada?"),
    ]
    assert router.route(messages, draft="Ottawa.").sensitive


def test_distress_and_crisis_cues_are_words_not_topics():
    assert distress_cue("How do I ask my manager for a raise?") is None
    assert distress_cue("I was passed over for promotion again") == "passed over"
    assert crisis_cue("I cut myself again last night.") == "cut myself"
    assert crisis_cue("How do I cut onions without crying?") is None


@pytest.mark.parametrize(
    ("query", "cue"),
    [
        ("My landlord gave us a month to move out with the baby due in May.", "circumstances"),
        ("Is it okay to stop taking my statins?", "decision"),
        ("Will the bailiffs take the car?", "risk"),
    ],
)
def test_calm_requests_with_personal_stakes_are_sensitive(router, query, cue):
    """No word of distress in any of them; the stakes are the user's own."""
    route = router.route([user(query)], draft="Here is what usually happens.")
    assert route.sensitive and "safety" in route.aspects, route.reasons["safety"]
    expected = {
        "circumstances": "the user's own circumstances",
        "decision": "a decision about the user's own life",
        "risk": "distress or risk words",
    }
    assert expected[cue] in route.reasons["safety"]


def test_the_same_plain_request_is_sensitive_from_a_user_known_to_be_struggling(router):
    query = [user("How do I write a letter asking for unpaid leave?")]
    struggling = ["Mental Health Status: Depression", "Age: 35-44 years"]
    denied = ["Past Self-Harm History: None", "Age: 35-44 years"]
    assert router.route(query, persona=struggling).sensitive
    assert not router.route(query).sensitive
    assert not router.route(query, persona=denied).sensitive  # a denial is not a risk
    # Known struggles do not make every request sensitive: the classifier still has a say.
    assert not router.route([user("How do I find a cheaper flat?")], persona=struggling).sensitive


def test_own_circumstances_are_told_not_asked():
    assert own_situation("How do I ask my landlord to deal with the mould?") is None
    assert own_situation("When should I book the Eurostar?") is None  # "when" asks here
    assert own_situation("My son was expelled last week.") == "My son was expelled last week."
    assert own_situation("How much is too much if my knee hurts daily?") == "if my knee hurts daily"
    assert personal_stakes("Should we sell the flat?") == "Should we"
    assert personal_stakes("Which phone should I buy?") is None
    assert vulnerability(["Loved Never Let Me Go.", "Prefers short novels."]) is None


@pytest.mark.parametrize(
    ("text", "cue"),
    [
        ("I've felt lost since the move.", "felt lost"),
        ("I lost my mother in May.", "lost my mother"),
        ("We got lost twice on the drive.", None),
        ("I lost the receipt for the kettle.", None),
        ("I've been feeling low for weeks.", "feeling low"),
        ("The low tyre pressure light is on.", None),
        ("We're flat broke since the layoff.", "flat broke"),
        ("The zip on my bag is broke.", None),
        ("My back hurts when I sit.", "hurts"),
        ("Does it hurt the battery to charge overnight?", None),
        ("My dad died in March.", "died"),
        ("My phone died halfway.", None),
        ("Make me a cheat sheet for Git.", None),
        ("He's been cheating on me.", "cheating"),
        ("How do I fix a flat tyre?", None),
        ("We keep fighting about money.", "fighting"),
        ("Any good fighting games?", None),
        ("I'm dying to see Rome.", None),
        ("How do I kill time on a layover?", None),
    ],
)
def test_words_with_an_everyday_sense_count_only_in_their_sense_of_distress(text, cue):
    assert distress_cue(text) == cue


def test_crisis_words_with_an_everyday_sense_are_not_a_crisis():
    assert crisis_cue("It beats me why the bread won't rise.") is None
    assert crisis_cue("How do I slice a mango with a knife?") is None
    assert crisis_cue("Can I take all the leftovers home?") is None
    assert crisis_cue("He beats me when he drinks.") == "beats me"
    assert crisis_cue("I took all my sleeping pills.") == "took all my sleeping pills"
    assert crisis_cue("I cut myself with a knife.") == "cut myself"


def test_a_put_off_answer_is_told_from_what_follows():
    assert (
        declined_then("Not today. Can you give me a soup recipe?")
        == "Can you give me a soup recipe?"
    )
    assert (
        declined_then("No thank you. What time zone is Tokyo in?") == "What time zone is Tokyo in?"
    )
    assert declined_then("Maybe later.") is None  # nothing follows: it answers
    assert declined_then("Not yet. Who do I call first?") is None  # an answer, not a put-off


def test_putting_off_the_question_and_asking_something_else_does_not_continue_it(router):
    earlier = [
        user("My landlord is threatening to evict us."),
        assistant("That's stressful. Shall we look at your rights as a tenant?"),
    ]
    new = router.route([*earlier, user("Perhaps another time. What time zone is Tokyo in?")])
    assert not new.sensitive, new.reasons["safety"]
    continued = router.route([*earlier, user("Maybe later. Can they do that with a baby due?")])
    assert continued.sensitive, continued.reasons["safety"]


def test_a_threat_is_a_crisis_and_a_figure_of_speech_is_not():
    assert crisis_cue("Dad will kill me if I scratch the car.") is None
    assert crisis_cue("My coach is gonna kill me for skipping practice.") is None
    assert crisis_cue("She said she'd hurt me if I called the police.") == "said she'd hurt me"
    assert crisis_cue("He'll hurt me if I leave him.") == "hurt me if I leave"
    assert crisis_cue("I'm afraid he will kill me.") == "afraid he will kill me"
    assert crisis_cue("I want to kill myself.") == "kill myself"


def test_a_dead_plant_or_a_pastime_or_a_diet_is_not_the_users_circumstances(router):
    assert own_situation("The tomato plants look a bit sad after the heatwave.") is None
    assert distress_cue("The tomato plants look a bit sad after the heatwave.") is None
    assert distress_cue("My sister looks sad lately.") == "sad"
    assert own_situation("I'm playing Hollow Knight and keep dying to the same boss.") is None
    assert own_situation("My husband is allergic to shellfish.") is None
    assert distress_cue("My son had anaphylaxis at school.") == "anaphylaxis"
    route = router.route([user("Our fern on the balcony seems half dead. Should I repot it?")])
    assert not route.sensitive


def test_a_loss_told_calmly_is_sensitive(router):
    assert own_loss("We had to have our old cat put to sleep last week.") == (
        "had to have our old cat put to sleep"
    )
    assert own_loss("I had to put him down in the end.") == "had to put him down"
    assert own_loss("I had to put the phone down on her.") is None
    assert distress_cue("We had to put the baby down for a nap early.") is None
    assert own_loss("The hero died in the last chapter.") is None
    route = router.route([user("Our rabbit was put down yesterday.")])
    assert route.sensitive and "own loss" in route.reasons["safety"]


def test_ordinal_dates_are_compared_with_the_dialogues():
    _, changed = draft_against_history("I'm back on the 3rd.", "I return on the 5th.")
    assert changed == {"number": ["3"]}


def test_a_burden_about_to_end_is_a_crisis_and_planning_for_old_age_is_not():
    """Perceived burdensomeness is a warning sign without any word of death (seen in held-out
    part 4: "Tonight is the night I finally stop being a burden")."""
    assert crisis_cue("Soon I'll stop being a burden to all of you.") == "stop being a burden"
    assert crisis_cue("I just won't be around much longer, it's fine.") is not None
    assert crisis_cue("I won't be a burden anymore after this weekend.") is not None
    assert crisis_cue("How do I plan care so I won't be a burden on my kids when I'm old?") is None
    assert crisis_cue("Will the shop be around much longer after the merger?") is None
