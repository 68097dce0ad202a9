"""What a turn's text says without any model: claims in the draft, follow-up cues, self-disclosure.

Cheap regular expressions; the router weighs them together with the embedding classifier.
"""

from __future__ import annotations

import re

_NUMBER_WORDS = (
    "one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|"
    "hundred|thousand|million|billion|trillion|dozen"
)
_MONTHS = "january|february|march|april|june|july|august|september|october|november|december"
_NUMBER = re.compile(rf"\d+(?:[.,]\d+)*|\b(?:{_NUMBER_WORDS})\b", re.IGNORECASE)
_CAPITALISED = re.compile(r"\b(?:[A-Z][a-z]+|[A-Z]{2,})\b")
_DATE = re.compile(rf"\b(?:{_MONTHS})\b", re.IGNORECASE)
_NOT_ENTITIES = frozenset({"I", "I'm", "OK", "Ok", "Mr", "Mrs", "Ms", "Dr"})

_FOLLOW_UP = re.compile(
    r"\b(?:it|its|that|this|those|these|they|them|their|he|she|his|her|the same|again|earlier|"
    r"before|instead|also|another|more|the other|the (?:first|second|third|last|next) one|"
    r"you (?:said|say|told|mentioned|recommended|suggested)|we (?:agreed|said|discussed)|"
    r"as I said|remember|remind|what about|how about)\b",
    re.IGNORECASE,
)
_CONTINUATION = re.compile(r"^\s*(?:and|so|but|then|also|ok(?:ay)?|what about|how about)\b", re.I)

_FIRST_PERSON = re.compile(r"\b(?:I|I'm|I've|I'd|my|we|we're|our)\b", re.IGNORECASE)


def factual_claims(text: str) -> list[str]:
    """Numbers, dates and named entities in `text`: things a fact-checker could verify."""
    found = [m.group(0) for m in _NUMBER.finditer(text)]
    found += [m.group(0) for m in _DATE.finditer(text)]
    found += _entities(text)
    return list(dict.fromkeys(found))


def _entities(text: str) -> list[str]:
    """Capitalised words that do not start a sentence (names, places, titles), and acronyms."""
    found = []
    for match in _CAPITALISED.finditer(text):
        word, before = match.group(0), text[: match.start()].rstrip()
        starts_sentence = not before or before[-1] in ".!?\"'(\n"
        if word not in _NOT_ENTITIES and (word.isupper() or not starts_sentence):
            found.append(word)
    return found


def follow_up_cue(query: str) -> str | None:
    """The words that make `query` lean on earlier turns ("it", "you said", "and ..."), if any."""
    match = _CONTINUATION.search(query) or _FOLLOW_UP.search(query)
    return match.group(0).strip() if match else None


def discloses_self(text: str) -> bool:
    """Whether a user message tells something about the user: a first-person statement
    ("I'm vegetarian", "My budget is 800 dollars"), not a question."""
    return not text.rstrip().endswith("?") and _FIRST_PERSON.search(text) is not None


_WORD = re.compile(r"[a-z][a-z'-]{3,}")
_STOP = frozenset(
    "that this with have from what when where which there their about would could should your "
    "you're they them then than will just some into been were also very more much like does".split()
)


def content_words(text: str) -> set[str]:
    """Lower-cased words of four letters or more, without common function words."""
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def overlap(a: str, b: str) -> float:
    """Share of `a`'s content words that also occur in `b` (0 when `a` has none)."""
    words = content_words(a)
    return len(words & content_words(b)) / len(words) if words else 0.0
