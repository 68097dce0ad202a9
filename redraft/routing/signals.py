"""What a turn's text says without any model: claims in the draft, follow-up cues, self-disclosure,
requests for a choice that turns on the user's taste, distress and crisis words, the user's own
circumstances, topic switches, and facts the draft shares with or changes from the dialogue.

Cheap regular expressions; the router weighs them together with the embedding classifier.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

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
    r"as I said|remember|remind|what about|how about|"
    # elliptical leans on what was said: "Which laptop then?", "Something shorter?"
    r"then|though|anyway|either|(?:that|which|this|the) one|(?:something|anything|somewhere|"
    r"anyone) (?:else|new|shorter|longer|cheaper|closer|smaller|bigger|simpler|under|over|with|"
    r"without|more|less)|too (?:pricey|expensive|long|short|far|much|hard|late|early)|"
    r"cheaper|shorter|longer|closer|the end|the way|the best time|the (?:first|second|last)|"
    r"why not|even (?:in|if|with|without|on|at|for)|so (?:I|we|if|it)|in that case)\b",
    re.IGNORECASE,
)
_CONTINUATION = re.compile(
    r"^\s*(?:and|so|but|then|also|ok(?:ay)?|what about|how about|great|perfect|right|sure|yes|"
    r"yeah|no|nope|hmm|well|actually|mostly|maybe|about|around|only|just|even)\b",
    re.I,
)
# The user leaves the earlier topic on purpose: neither coherence nor an earlier sensitive turn
# carries over.
_TOPIC_SWITCH = re.compile(
    r"\b(?:unrelated|different (?:question|topic|subject)|new (?:question|topic)|"
    r"(?:switch|change|changing|switching) (?:the )?(?:topics?|subjects?)|another (?:topic|thing)|"
    r"random question|on another note|moving on|quick one|anyway[,.!])",
    re.IGNORECASE,
)
# Crisis: a risk to life or safety. A crisis anywhere in the recent turns keeps safety on.
_CRISIS = re.compile(
    r"\b(?:suicid\w*|kill(?:ing)? myself|(?<!will )(?<!'ll )(?<!'d )(?<!would )(?<!gonna )kill me"
    r"(?! if)|end(?:ing)? (?:it all|my life|things)|"
    r"take my (?:own )?life|want(?:ed)? to die|wish I (?:was|were) dead|better off without me|"
    r"(?:no|not see the|don't see the|don't see any) (?:point|reason) (?:in|to|of) (?:living|live|"
    r"going on)|not (?:to )?wake up(?! (?:the|my|your|our|a|an|at|early|groggy|tired|before|"
    r"during))|self[- ]harm\w*|(?:cut|cutting|hurt|hurting|harm|harming) "
    r"myself|overdos\w*|(?:took|take|taking|swallowed) (?:a whole|all (?:the|my)|the whole|"
    r"a bottle "
    r"of) (?:\w+ )?(?:pills|tablets|meds|medication|bottle|packet|box)|"
    r"(?:the|my) pills|goodbye (?:letters?|notes?)|disappear (?:for good|forever)|want to jump|"
    r"jump (?:off|from)|(?:hits|(?<!it )beats|chokes|threatens|threatened) me|"
    # a threat told ("he said he'll kill me if I leave"), not a figure of speech ("mum will kill
    # me if I'm late"): reported, or the price of leaving, telling or seeking help
    r"(?:said|says|swore|swears|threaten\w*|warned|told me|promised|texted|screamed|shouted)"
    r"[^.?!]{0,25}?\b(?:kill|hurt) me\b|(?:scared|afraid|terrified|fear\w*)[^.?!]{0,20}?\b(?:kill|"
    r"hurt) me\b|(?:kill|hurt) me if I (?:ever )?(?:try to )?(?:leave|"
    r"left|tell|told|report|call|go to|talk to|speak to|see|say)|"
    r"with a (?:knife|gun)|(?<!it )(?<!this )(?<!that )touches me|raped?|sexual(?:ly)? (?:abused?|"
    r"assault\w*)|"
    r"(?:haven't|have not|not) eaten in \w+ days|starving myself|abus(?:e|ed|ive)|"
    # feeling a burden that is about to end: a classic warning sign with no word of death
    r"(?:stop|no longer|not be|won't be|will not be) (?:being )?a burden(?! on (?:my|our) "
    r"(?:kids|children|family) (?:when|as|in))|won't be (?:around|here) (?:much longer|for long|"
    r"any ?more))\b",
    re.IGNORECASE,
)
# "low", "flat", "empty", "down", "lost", "stuck" are a feeling only when someone feels or is so
# ("I've felt lost since the move", "feeling low"), not "got lost", "low battery", "a new flat".
_FEELING = (
    r"(?:feel|feels|felt|feeling|I'm|I am|I've been|I have been|been) (?:so |very |really |"
    r"pretty |a bit |kind of |completely |totally |utterly |quite )?"
    r"(?:low|flat|empty|down|lost|numb|hollow|stuck|blue)(?! (?:on|in (?:the|a)|battery|signal)\b)"
)
_PLANTS = (
    r"(?:house ?)?plants?|basil|herbs?|mint|parsley|coriander|lawn|grass|leaves|trees?|hedges?|"
    r"shrubs?|bush(?:es)?|flowers?|roses?|orchids?|ferns?|palms?|ivy|monstera|pothos|lil(?:y|ies)|"
    r"succulents?|cact(?:us|i)|seedlings?|tomato(?:es)?|vines?|bonsai|crops?"
)
# Everyday senses of the words of distress, risk and crisis, blanked out before those are looked
# for: a flat tyre, a dead battery, a laptop that crashed, "it beats me", a knife for an onion.
_EVERYDAY = re.compile(
    r"\b(?:(?:tyre|tire|water|air|oil|cabin|barometric|atmospheric) pressure|pressure (?:cookers?|"
    r"washers?|gauges?|sensors?|canners?|points?)|"
    r"(?:phone|laptop|battery|batteries|engine|computer|pc|tv|console|router|wi-?fi|"
    r"internet|server|app|website|plant|basil|torch|remote|it|screen) (?:\w+ ){0,2}?(?:died|dies|"
    r"dying|is dead|was dead|went dead|crash(?:ed|es|ing)?|shut(?:s|ting)? down|failed|fails|"
    r"keeps failing|froze|freezes)|"
    rf"(?:{_PLANTS}|cake|bread|sourdough|dough|loaf|souffl\w*|sofa|cushions?)\b"
    r"[^.?!]{0,30}?\b(?:looks?|looking|seems?|went|goes|turned) "
    r"(?:a (?:bit|little) |so |very |really |rather |pretty |kind of )?(?:sad|miserable|unhappy|"
    r"depressed|dead|lifeless|half[- ]dead)|"
    r"dead (?:batter(?:y|ies)|ends?|easy|simple|heat|ringer|zones?|pixels?|links?|centre|center)|"
    r"death valley|sudden death|death metal|day of the dead|walking dead|"
    r"cheat (?:sheets?|codes?|days?|meals?|mode)|stress[- ](?:free|test\w*|balls?)|"
    r"(?:stressed|unstressed) syllables?|binge[- ]?watch\w*|"
    r"drinking (?:water|enough|more water|coffee|tea|milk|fountains?|glass(?:es)?)|"
    r"(?:build|test|tests|upload|download|install(?:ation)?|update|login|connection|pipeline|"
    r"request|command|compilation|deploy(?:ment)?|push|sync|backup) (?:\w+ )?(?:failed|fails|"
    r"failing)|"
    r"(?:pull|merge) requests? (?:was |got |were )?rejected|kernel panic|panic buttons?|"
    r"motivation(?:al)? (?:letters?|statements?|speech|quotes?)|(?:terrible|awful) (?:weather|"
    r"traffic|service|food|wi-?fi|signal|reception|film|movie|book|handwriting|at)|"
    r"(?:a|such a|real|bit of a) pain (?:to|in the)|toxic (?:to|for) (?:cats?|dogs?|pets?|birds?|"
    r"horses?|rabbits?)|(?:stole|steal|steals) the show|overdue (?:library )?books?|"
    r"(?:got|get|getting|gets) lost|lost (?:the|a|an|my|our|his|her|their) (?:\w+ )?(?:receipt|"
    r"keys?|"
    r"wallet|luggage|bag|umbrella|match|game|final|race|bet|signal|connection|password|files?|"
    r"remote|ticket|track|charger)|"
    r"(?:cut|cutting|slice|slicing|chop|chopping|peel|peeling|open|opening|carve|carving|dice|"
    r"dicing|score|scoring|spread|spreading) (?:the|a|an|up|open|into|through|it|"
    r"them)\b[^.?!]{0,40}?"
    r"with a knife|default (?:settings?|values?|browser|apps?|font|options?|printer)|"
    r"(?:leave (?:it|them)|travel(?:l?ing)?|eat(?:ing)?|dine|dining|hike|hiking) alone|"
    r"(?:a|my|our|the|new|rented|shared) flat|flat (?:tyres?|tires?|whites?|rates?|fees?|packs?|"
    r"screens?|shoes|bread|feet|surfaces?|roofs?))\b",
    re.IGNORECASE,
)


def everyday(text: str) -> str:
    """`text` with the everyday senses of the words of distress, risk and crisis blanked."""
    return _EVERYDAY.sub(" ", text)


# A pet put down or put to sleep ("We had to have our old cat put to sleep"), not a phone or a
# baby put down.
_PET_PUT_DOWN = (
    r"had (?:to )?(?:put|have|him|her|them|it)\b (?:(?:him|her|them|it|(?:our|my|the|his|her|"
    r"their) (?:\w+ )?(?:dog|cat|pet|horse|pony|rabbit|bunny|hamster|guinea pig|puppy|kitten|"
    r"parrot|bird|ferret|tortoise)) )?(?:put )?(?:down|to sleep)(?! for)"
)
# Distress or risk in the user's own situation: losses, illness, conflict, money trouble,
# feelings. Without one, a study, work or travel question is not sensitive on its topic alone.
_DISTRESS = re.compile(
    r"\b(?:anxi\w*|panic\w*|depress\w*|stress\w*|overwhelm\w*|burn(?:t|ed)? ?out|exhausted|"
    r"lonely|loneliness|isolat(?:ed|ion)|alone|ashamed|shame|guilt\w*|scared|afraid|terrified|"
    r"fear\w*|worr\w*|nervous|upset|hurt(?:s|ing)?(?! (?:the|an?|your|its|anything|anyone|"
    r"to (?:ask|"
    r"try|check|have|know|be|wait|look))\b)|heartbroken|grie\w*|mourn\w*|miserable|hopeless\w*|"
    r"worthless|desperate|struggl\w*|cop(?:e|ing)|crying|cry|cried|cries|sad|sadness|numb|"
    r"insecur\w*|"
    # low, flat, empty, down, lost: a feeling only when someone feels or is so
    rf"{_FEELING}|low (?:mood|self[- ]esteem|spirits|point)|"
    r"inadequa\w*|frustrat\w*|angry|anger|resent\w*|jealous\w*|humiliat\w*|embarrass\w*|"
    r"bull(?:y|ied|ying)|harass\w*|discriminat\w*|toxic|manipulat(?:ive|ion|es|ed|ing me)|"
    r"controlling(?! (?:the|an?|for|its|access|costs?|variables?)\b)|cheat(?:ed|ing|s|er|ers)?|"
    r"affair|divorc\w*|breakups?|break(?:ing)? up with|(?:a|the|my|our|his|her|their|bad|recent) "
    r"break ?up|broke up|separated|separation|separating|leav(?:e|ing) (?:me|my (?:marriage|"
    r"husband|wife|partner))|fight(?:s|ing)?(?! (?:an?|the|off|for|against|back|fires?|games?|"
    r"scenes?|club|night)\b)|argu(?:e|ed|es|ing)(?! that)|(?:an?|had an?|big|huge|constant|"
    r"another) arguments?(?! (?:for|that|in|of|against)\b)|estranged|haven't spoken|"
    r"ghost(?:ed|ing)|died|dead|death|passed away|(?:was|were|been|be|being|got|get) put (?:down|"
    rf"to sleep)|{_PET_PUT_DOWN}|euthan\w*|puts? (?:me|us) down|"
    r"los(?:t|ing|s) (?:my|our|the) (?:job|house|home|"
    r"mother|father|mum|mom|dad|son|daughter|child|baby|wife|husband|partner|friend|brother|"
    r"sister|savings)|lost (?:him|her|them|everything|hope|interest|custody|the baby|touch with|"
    r"(?:my|our|a) (?:\w+ )?(?:pregnancy|loved one|grandmother|grandfather|grandma|grandpa|"
    r"nan|aunt|uncle|cousin|pet|dog|cat|twin))|"
    r"miscarriage|diagnos\w*|illness|disease|cancer|dementia|alzheimer\w*|"
    r"(?<!brush )stroke(?! (?:of|the|a|order|count|width)\b)|chronic|pain(?! (?:au|aux|de|"
    r"perdu)\b)|"
    r"pains|disabled|disability|carer|caregiver|addict\w*|drinking|gambl\w*|binge(?:s|d|ing)?|"
    r"eating disorder|adhd|therap\w*|mental health|emotional\w*|well-?being|fired|laid off|"
    r"layoffs?|redundan\w*|unemploy\w*|sacked|passed over|demot\w*|expelled|failed|failing|"
    r"rejected|rejection|debts?|owe|(?:I'm|I am|we're|we are|I was|we were|been|being|so|totally|"
    r"completely|flat|stone|dead|go|going|gone|went) broke|bankrupt\w*|evict\w*|homeless\w*|"
    r"repossess\w*|can't afford|cannot afford|afford|mortgage payments|savings run out|crisis|"
    r"trauma\w*|pregnan\w*|abortion|setbacks?|pressure|motivation|give up|giving up|overwork\w*|"
    r"difficult(?:y|ies)|hard time|tough time|(?:under|a lot of|the) strain|strain (?:on|of)|"
    r"(?:muscle|back|eye|hamstring) strain|"
    r"suffer\w*|failure|terrible|awful|feel(?:ing)? like a (?:failure|fraud|burden|loser|joke|"
    r"mess|disappointment|outsider|bad|terrible|horrible))\b",
    re.IGNORECASE,
)
# Events and circumstances that put someone's health, money, home, legal standing, place in a
# group or future at stake, however calmly told ("behind on the loan", "a plagiarism finding",
# "the hospice team"): the hard situations PENGUIN's scenarios name, and medicines and doses.
_RISK = re.compile(
    r"\b(?:custody|restraining order|stalk\w*|violen\w*|unfaithful|infidel\w*|betray\w*|"
    r"disown\w*|widow\w*|funeral|bereave\w*|hospice|palliative|terminal(?:ly)?|"
    r"(?:was|were|been|being|got|get|getting) let go|job cuts|dismiss(?:ed|al)|terminated|"
    r"wrongful\w*|unfair(?:ly)?|"
    r"scandal|fraud\w*|scam\w*|ponzi|pyramid scheme|embezzl\w*|lawsuit|suing|sued|"
    r"accus\w*|under investigation|being investigated|reprimand\w*|formal warning|"
    r"went under|folded|clos(?:ed|ing) down|shut(?:ting)? down|bankrupt\w*|insolven\w*|"
    r"behind on|arrears|overdue|default(?:ed|ing)?(?! (?:settings?|values?|browser|apps?)\b)|"
    r"foreclos\w*|repossess\w*|collection agenc\w*|"
    r"debt collectors?|bailiffs?|loan sharks?|unlicensed|payday loans?|margin call|wiped out|"
    r"crash(?:ed)?|losses|identity theft|stole\w*|medical bills|hospital bills?|"
    r"worth less than|negative equity|made a pass|inappropriate|harm(?:s|ed|ful|ing)?|injur\w*|"
    r"accident|anaphyla\w*|epi-?pens?|"
    r"surgery|botched|gone wrong|sober\w*|relaps\w*|rehab|withdrawal symptoms|intrusive|"
    r"compulsi\w*|ocd|ptsd|flashbacks?|phobi\w*|insomnia|can't sleep|calorie\w*|purg\w*|"
    r"paralys\w*|amputat\w*|prosthe\w*|wheelchair|lost my (?:sight|hearing)|medication|meds|"
    r"dose|dosage|antidepressants?|"
    r"sleeping (?:pills|tablets)|painkillers?|opioids?|expelled|excluded|exclud\w*|ostraci\w*|"
    r"shun\w*|shut (?:me |us )?out|left out|dropped me|thrown out|kicked out|blacklist\w*|"
    r"no confidence|rumou?rs?|backlash|pile-on|went viral|badmouth\w*|falling[- ]out|fell out|"
    r"plagiari\w*|misconduct|integrity hearing|probation|resits?|retak\w*|turned down|"
    r"dyslexi\w*|learning disabilit\w*|homesick\w*|forced (?:to|out)|deport\w*|asylum|refugee|"
    r"undocumented|visa (?:refus\w*|cancel\w*|denied|expir\w*)|(?:is|was|being|been|gets?|"
    r"getting|got) deployed|(?:his|her|my|their|military|next) deployment|(?:coming|come) out "
    r"(?:to|as)|transitioning|gender transition|outsider|don't belong|drop(?:ping)? out)\b",
    re.IGNORECASE,
)
# A decision about the user's own life, health or money ("Should I sell now?", "Is it safe for
# me to ...", "What happens if I default?"): the stakes are the user's.
_STAKES = re.compile(
    r"^\W*(?:should (?:I|we)|is it (?:safe|wise|smart|okay|ok|normal|too late|a mistake|"
    r"worth it|right|wrong)|am I|can I (?:still|afford|keep|get|stop|go back|borrow)|"
    r"what happens (?:if|when|to my)|will (?:I|they|my|it stay|this stay))\b|"
    r"\b(?:for me|safe for me|my (?:options|rights|chances))\b",
    re.IGNORECASE,
)

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


def crisis_cue(text: str) -> str | None:
    """Words that say a life or someone's safety may be at risk, if any."""
    match = _CRISIS.search(everyday(text))
    return match.group(0) if match else None


def distress_cue(text: str) -> str | None:
    """Words of distress or risk (a loss, an illness, a conflict, money trouble, a feeling), if
    any: what separates a sensitive request from one that only shares its topic. Words with
    an everyday sense count only in their sense of distress ("I feel lost", not "we got lost")."""
    text = everyday(text)
    match = _DISTRESS.search(text) or _RISK.search(text) or _CRISIS.search(text)
    return match.group(0) if match else None


_SIGN_OFF = re.compile(
    r"^\W*(?:thanks|thank you|thx|cheers|bye|goodbye|see you|good ?night|that'?s all|"
    r"that is all|have a (?:good|nice) (?:day|one))\b[^?]*$",
    re.IGNORECASE,
)


def signs_off(text: str) -> bool:
    """Whether the message only thanks or says goodbye ("Thanks a lot, that's all for
    today!"): it leans on nothing that a reply could contradict. A question is not one."""
    return _SIGN_OFF.search(text.strip()) is not None


# A sentence that asks or instructs ("How do I ask my landlord to ...", "Rewrite my essay"), as
# opposed to one that tells ("My son was expelled last week").
_ASKS = re.compile(
    r"^\W*(?:how|what|what's|which|where|when|who|why|can|could|would|will|is|are|do|does|did|"
    r"should|any|tips|help|give|make|write|rewrite|draft|plan|explain|quiz|suggest|recommend|"
    r"pick|show|tell me|list|find|summari[sz]e|translate|fix|check|proofread|convert|compare|"
    r"create|edit|book|remind|teach|describe|calculate|compose|generate|format|organi[sz]e|"
    r"please)\b",
    re.IGNORECASE,
)
# A clause of the user's own circumstances inside a question ("... after my divorce?",
# "... if my knee hurts every day?", "... now that the kids have left and we ...?"); "when"
# only inside a sentence ("When should I ..." asks).
_OWN_CLAUSE = re.compile(
    r"\b(?:if|after|since|now that|while|because|though|although|but|given that|(?<=\s)when)\b"
    r"[^.?!]*?\b(?:I|I'm|I've|I'd|my|we|we're|we've|our)\b[^.?!]*",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(
    r"(?<=[.!?])\s+|,\s+(?=(?:what|how|why|which|where|can|could|should|is|are|do|does)\b)", re.I
)
# The user as the one something happens to ("I", "we", "me", "my manager", "my knee"), as
# opposed to a thing of theirs ("My car battery died", "Our router keeps dropping").
_SUBJECT = re.compile(r"\b(?:I|I'm|I've|I'd|we|we're|we've|me|us)\b", re.IGNORECASE)
_THINGS = re.compile(
    r"\b(?:my|our) (?:\w+ )?(?:car|bike|phone|laptop|computer|pc|tablet|router|wi-?fi|internet|"
    r"printer|tv|battery|charger|luggage|suitcase|bag|keys|flight|train|order|parcel|package|"
    rf"delivery|bread|sourdough|cake|dough|recipe|{_PLANTS}|garden|essay|code|script|app|"
    r"website|spreadsheet|presentation|slides|camera|headphones|shower|boiler|heating|fridge|"
    r"oven|dishwasher|washing machine|sink|jacket|shoes|zip)\b",
    re.IGNORECASE,
)


# What the user is doing for fun or making ("I'm playing Elden Ring and keep dying", "I'm baking
# for twelve") and a diet or food allergy given as a constraint ("My daughter is allergic to
# eggs.", "We're vegetarian"): context for the request, not circumstances at stake. A word of
# distress or risk in the same sentence is still read first.
_A_THING_FIRST = re.compile(r"^\W*(?:the|a|an|this|that|these|those)\b", re.IGNORECASE)
_PASTIME = re.compile(
    r"^\W*(?:I'm|I am|we're|we are|I've been|we've been) (?:\w+ )?(?:playing|reading|watching|"
    r"baking|cooking|knitting|building|painting|drawing|gardening|learning|practi[sc]ing|"
    r"binging|streaming|listening to|training for|decorating|planning (?:a|an|our|my) (?:trip|"
    r"holiday|vacation|party|wedding|dinner|picnic|visit))\b",
    re.IGNORECASE,
)
_DIET = re.compile(
    r"^\W*(?:I'm|I am|we're|we are|(?:my|our) (?:\w+ )?\w+ (?:is|are)|"
    r"(?:he|she|they)(?:'s|'re| is| are)) (?:\w+ )?(?:allergic to|intolerant to|"
    r"(?:lactose|gluten) intolerant|vegetarian|vegan|"
    r"pescatarian|coeliac|celiac|on a (?:\w+ )?diet|(?:halal|kosher|keto|paleo)|"
    r"(?:not|don't|doesn't) (?:eat|drink))\b[^.?!]*$",
    re.IGNORECASE,
)


# A death told by the one who grieves it ("Our dog was put down on Saturday.", "My dad passed
# away in March."): a loss is sensitive however calmly it is told.
_LOSS = re.compile(
    r"\b(?:died|passed away|passed on|(?:was|were|been|be|being|got|get) put (?:down|to sleep)|"
    rf"{_PET_PUT_DOWN}|euthan\w*|"
    r"funeral|miscarr\w*|stillb\w*|los(?:t|ing) (?:my|our) (?:\w+ )?(?:mother|father|mum|mom|dad|"
    r"son|daughter|child|baby|wife|husband|partner|friend|brother|sister|grandmother|"
    r"grandfather|grandma|grandpa|nan|aunt|uncle|cousin|pet|dog|cat))\b",
    re.IGNORECASE,
)


def own_loss(text: str) -> str | None:
    """The words of a death the user tells as their own loss, if any."""
    match = _LOSS.search(everyday(text))
    return match.group(0) if match and own_situation(text) else None


def own_situation(text: str) -> str | None:
    """Where the user tells their own circumstances, if anywhere: a first-person sentence
    that does not ask ("My manager put me on a performance plan.") or a clause of a question
    ("... if my knee hurts every day?"). A calm request about one's own health, money,
    family or future carries personal stakes that a how-to question ("How do I calculate my
    GPA?") does not."""
    for sentence in _SENTENCE_END.split(text.strip()):
        # "My car battery died", "The basil on my windowsill looks sad": a thing, not the user
        about_a_thing = (
            _THINGS.search(sentence) or _A_THING_FIRST.search(sentence)
        ) and not _SUBJECT.search(sentence)
        if _PASTIME.search(sentence) or _DIET.search(sentence.rstrip(".!")):
            continue
        if _FIRST_PERSON.search(sentence) and not _ASKS.search(sentence) and not about_a_thing:
            return sentence
        clause = _OWN_CLAUSE.search(sentence)
        if clause:
            return clause.group(0).strip()
    return None


# A persona fact whose value denies what its name names ("Past Self-Harm History: None").
_DENIED = re.compile(r":\s*(?:none|no|n/?a|never|not applicable)\W*$", re.IGNORECASE)


def vulnerability(facts: Sequence[str]) -> str | None:
    """The first known fact about the user that tells of distress, risk or a crisis ("Mental
    Health Status: Anxiety", "Emotional State: worried about money"), if any: the same request
    is riskier from a user known to be struggling (PENGUIN's personalised safety)."""
    for fact in facts:
        if not _DENIED.search(fact) and distress_cue(fact):
            return fact
    return None


def personal_stakes(text: str) -> str | None:
    """The words that make a question a decision about the user's own life, health or money
    ("Should I ...", "Is it safe for me to ...", "What happens if I ..."), if any."""
    match = _STAKES.search(text)
    return match.group(0).strip() if match else None


# A request for a recommendation or a choice that turns on the user's own taste or situation
# ("What should I read next?", "Any album recommendations?", "Which laptop would suit me?",
# "Pick a museum for me"): what fits depends on who asks.
_CHOICE = re.compile(
    r"\b(?:recommend\w*|suggest\w*|suggestions?|recs|ideas? for|any ideas|"
    r"pick (?:a|an|some|one|something|me|out)|help me (?:choose|pick|decide)|"
    r"what (?:\w+ ){0,3}(?:should|could|would|can|shall) (?:I|we) (?:read|watch|cook|make|eat|have|"
    r"bake|buy|get|play|listen to|wear|try|learn|visit|see|pack|name|order|drink|take up|pick|"
    r"choose|go for|start)|"
    r"which (?:\w+ ){0,3}(?:should|would|could|shall) (?:I|we) (?:read|watch|cook|make|eat|have|"
    r"bake|buy|get|play|listen to|wear|try|learn|visit|see|pick|choose|go for|start)|"
    r"(?:would|will|might) (?:I|we) (?:like|enjoy|love)|I'd (?:like|enjoy|love)\b[^.?!]*\?|"
    r"(?:suit|suits|fits?) (?:me|us)|(?:good|right|best) (?:\w+ ){0,2}for (?:me|us))",
    re.IGNORECASE,
)


def asks_for_choice(text: str) -> str | None:
    """The words that ask for a recommendation or a choice turning on the user's own taste
    ("What should I read next?", "Any album recommendations?"), if any: with facts known
    about the user, the reply should fit them."""
    match = _CHOICE.search(text)
    return match.group(0).strip() if match else None


def switches_topic(text: str) -> bool:
    """Whether the message says it leaves the earlier topic ("Unrelated, but ...")."""
    return _TOPIC_SWITCH.search(text) is not None


def discloses_self(text: str) -> bool:
    """Whether a user message tells something about the user: a first-person statement
    ("I'm vegetarian", "My budget is 800 dollars"), not a question."""
    return not text.rstrip().endswith("?") and _FIRST_PERSON.search(text) is not None


_WORD = re.compile(r"[a-z][a-z'-]{3,}")
_STOP = frozenset(
    "that this with have from what when where which there their about would could should your "
    "you're they them then than will just some into been were also very more much like does "
    "what's that's there's it's i'm i've i'd i'll we'd we're we've we'll you'd don't can't "
    "maybe".split()
)


def content_words(text: str) -> set[str]:
    """Lower-cased words of four letters or more, without common function words."""
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def overlap(a: str, b: str) -> float:
    """Share of `a`'s content words that also occur in `b` (0 when `a` has none)."""
    words = content_words(a)
    return len(words & content_words(b)) / len(words) if words else 0.0


_WEEKDAY = re.compile(
    r"\b(?:mon|tues|wednes|thurs|fri|satur|sun)day\b|\b(?:today|tonight|tomorrow|weekend)\b",
    re.IGNORECASE,
)
_CLOCK = re.compile(
    r"\b\d{1,2}(?::\d{2})?\s*(?:am|pm)\b|\b\d{1,2}:\d{2}\b|\bnoon\b|\bmidnight\b", re.I
)
_QUANTITY = re.compile(r"\b\d+(?:[.,]\d+)*(?=(?:st|nd|rd|th)?\b)")  # "the 14th" too
_SMALL_NUMBERS = {
    word: str(value)
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve".split()
    )
}
_SMALL_NUMBER = re.compile(rf"\b(?:{'|'.join(_SMALL_NUMBERS)})\b", re.IGNORECASE)


def specifics(text: str) -> dict[str, set[str]]:
    """The checkable specifics of `text` by kind: days, clock times, numbers and names."""
    clocks = {m.group(0).lower().replace(" ", "") for m in _CLOCK.finditer(text)}
    without_clocks = _CLOCK.sub(" ", text)
    return {
        "day": {m.group(0).lower() for m in _WEEKDAY.finditer(text)},
        "time": clocks,
        "number": {m.group(0).replace(",", "") for m in _QUANTITY.finditer(without_clocks)}
        | {_SMALL_NUMBERS[m.group(0).lower()] for m in _SMALL_NUMBER.finditer(text)},
        "name": {w.lower() for w in _entities(text)},
    }


def draft_against_history(draft: str, history: str) -> tuple[list[str], dict[str, list[str]]]:
    """Specifics the draft shares with the dialogue, and, by kind, specifics of a kind the
    dialogue also has but with another value (Friday 9 am after "9 pm on Friday"): the reply
    builds on what was said, or may contradict it. Cheap string checks."""
    mine, theirs = specifics(draft), specifics(history)
    shared: list[str] = []
    changed: dict[str, list[str]] = {}
    for kind in ("day", "time", "number", "name"):
        shared += sorted(mine[kind] & theirs[kind])
        if kind != "name" and mine[kind] and theirs[kind] and not mine[kind] & theirs[kind]:
            changed[kind] = sorted(mine[kind] - theirs[kind])
    return list(dict.fromkeys(shared)), changed


def is_elliptical(query: str, history: str) -> bool:
    """A short message that brings at most one content word of its own ("Where should I
    stay?", "how early"): it means something only with the dialogue."""
    own = content_words(query) - content_words(history)
    words = len(query.split())
    return (words <= 6 and len(own) <= 1) or (words <= 4 and len(own) <= 2)


# Putting off or turning down what the assistant offered or asked ("Maybe later.", "Not now,
# thanks.", "I'd rather not talk about it.", "Another time."), not an answer to it ("Not yet.").
_DECLINE = re.compile(
    r"^\W*(?:(?:ok(?:ay)?|well|hmm|honestly|actually|thanks|thank you)[,.!]?\s+)?(?:maybe |"
    r"perhaps )?"
    r"(?:later|not (?:now|right now|today|tonight|at the moment|yet,? thanks)|another time|"
    r"some ?other (?:time|day)|(?:a|some) ?other time|no,? thanks?(?: you)?|not for now|"
    r"I'?d (?:rather|prefer) not|(?:I )?don'?t (?:want|feel like|really want) to (?:talk|get into|"
    r"go into|discuss)|let'?s (?:not|leave (?:it|that)|skip (?:it|that))|(?:I'll|I will|I can) "
    r"(?:deal with|think about|look at|get to|come back to|sort) (?:that|it|this)|"
    r"I'?m (?:good|fine|ok(?:ay)?),? (?:for now|thanks|thank you))\b[^.?!]*[.!,;:]+\s*",
    re.IGNORECASE,
)


_WEAK_CUES = frozenset({"it", "its", "this", "that", "the way", "the end", "the best time"})


def refers_back(text: str) -> str | None:
    """A follow-up cue of `text` that points outside it ("her collar", "you said", "then"), if
    any; "it", "this" and "that" often point inside the sentence ("without it falling apart")."""
    for match in _FOLLOW_UP.finditer(text):
        if match.group(0).lower() not in _WEAK_CUES:
            return match.group(0)
    return None


def declined_then(query: str) -> str | None:
    """What follows when the message first puts off or turns down the assistant's offer or
    question ("Maybe later. What's the weather like in Crete?" gives the question): it answers
    that question without continuing its topic. None when it does not decline, or says nothing
    more."""
    match = _DECLINE.match(query)
    rest = query[match.end() :].strip() if match else ""
    return rest or None


def answers_question(query: str, reply: str) -> bool:
    """Whether the message answers the question the assistant's last reply ended with: its
    first sentence is a statement ("I think so. Should I leave?"); a new question is not."""
    first = re.split(r"(?<=[.!?])\s+", query.strip(), maxsplit=1)[0]
    return "?" in reply.rstrip()[-120:] and not first.endswith("?")
