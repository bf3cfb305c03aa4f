"""Named entities (person, organization, place) by gazetteer + capitalisation heuristic.

Why not a statistical NER model: spaCy's smallest English pipeline costs 50-100 ms per article on one
core — several times the whole cleaning stage — and only covers English; the models that do better
need hub downloads we cannot do. The heuristic runs in a few ms, works for any language written with
capitals, and its mistakes are easy to read and fix in the word lists under `data/`.

Steps: find runs of capitalised tokens per sentence, cut them at person titles ("Secretary General"),
classify each run (gazetteer, organisation/place head words, given names, "X said" cues, acronyms),
then merge the mentions of one person ("Putin" → "Vladimir Putin").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from newsflow.enrich.gazetteer import Gazetteer, gazetteer
from newsflow.enrich.text import clip, split_sentences

PERSON, ORG, PLACE = "person", "organization", "place"


def _words(text: str) -> list[str]:
    return text.split()


MAX_PER_TYPE = 15
# Name mentions classified per article, in text order; later ones are not read (and the text is clipped
# at text.MAX_TEXT_CHARS). The most in one body of our 900-page samples is 989.
MAX_MENTIONS = 5_000

# A word (with inner hyphens, apostrophes, dots and ampersands: "Murray-Bruce", "U.S.", "AT&T"),
# a number, or one punctuation character.
_TOKEN = re.compile(r"[^\W\d_](?:[\w&]|[-'’.](?=\w))*\.?|\d[\w.,]*|[^\w\s]")
# "(Vladimir) Putin": a name the writer bracketed into a quote.
_BRACKETED_NAME = re.compile(r"\((\w+)\)\s+(?=[A-Z])")
# "SANTA FE, N.M. (AP) —", "BERLIN --", "Hong Kong (CNN Business)": the dateline before the first sentence.
_DATELINE = re.compile(
    r"^(?P<city>[A-Z][\w .'-]{1,40}?)"
    r"(?:,\s*(?P<region>[A-Z][\w.]+(?: [A-Z][\w.]+)?))?"
    r"\s*(?:\((?P<agency>[^)]{2,40})\)\s*(?:--|[—–-])?|--|[—–-])\s+"
)

# Word tables, laid out by hand (ruff format would put every word on its own line).
# fmt: off
_CONNECTORS = frozenset({"de", "da", "del", "della", "der", "van", "von", "den", "la", "le", "bin", "ibn", "du",
                         "dos", "am", "&"})
_TITLES = frozenset({
    "President", "President-elect", "Prime", "Minister", "Secretary", "Secretary-General", "General", "Chancellor",
    "Governor", "Gov.", "Senator", "Sen.", "Rep.", "Representative", "Congressman", "Congresswoman", "Mr.", "Mrs.",
    "Ms.", "Mr", "Mrs", "Ms", "Dr.", "Dr", "Prof.", "Professor", "Judge", "King", "Queen", "Prince", "Princess",
    "Pope", "Sheikh", "CEO", "Chairman", "Chairwoman", "Director", "Coach", "coach", "Captain", "Capt.", "Gen.",
    "Col.", "Lt.", "Sgt.", "Ambassador", "Mayor", "Commissioner", "Speaker", "Leader", "Deputy", "Vice",
    "Spokesman", "Spokeswoman", "Spokesperson", "Hon.", "Rt.", "Sir", "Dame", "Lord", "Lady", "Premier",
    "Ombudsman", "Officer", "Founder", "Co-founder", "co-founder", "Chief", "Executive", "Justice", "Attorney",
    "Inspector-General", "Bishop", "Archbishop", "Rabbi", "Imam", "Father", "Sister", "Saint",
})
# Words that make a following title ("Defense Secretary") but are not titles on their own ("Interior Ministry").
_TITLE_MODIFIERS = frozenset({"Defense", "Defence", "Foreign", "Interior", "Finance", "Health", "Home", "State",
                              "Energy", "Trade", "Economy", "Culture", "Education", "Transport", "Labor", "Labour",
                              "Agriculture", "Deputy", "Vice", "Public", "First", "Former", "Acting", "Senate",
                              "House", "Party", "Team", "Research"})
_ORG_HEADS = frozenset({
    "Inc", "Inc.", "Corp", "Corp.", "Corporation", "Company", "Co.", "Ltd", "Ltd.", "LLC", "PLC", "plc", "AG", "SA",
    "GmbH", "Group", "Holdings", "Bank", "Agency", "Ministry", "Department", "Office", "University", "College",
    "School", "Institute", "Academy", "Association", "Council", "Committee", "Commission", "Party", "Union",
    "League", "Federation", "Foundation", "Fund", "Times", "Post", "News", "Journal", "Herald", "Tribune", "Press",
    "Service", "Services", "Authority", "Board", "Bureau", "Court", "Police", "Army", "Forces", "Force", "Command",
    "Assembly", "Parliament", "Senate", "Congress", "Airlines", "Airways", "Motors", "Technologies", "Systems",
    "Shelter", "Hospital", "Church", "Club", "Records", "Studios", "Network", "Exchange", "Organization",
    "Organisation", "Society", "Museum", "Labs", "Partners", "Media", "Brothers", "Guard", "Navy", "Staff",
    "Reserve", "Treasury", "Cabinet", "Coalition", "Movement", "Front", "Brigade", "Battalion", "FC", "Ministries",
})
_ORG_HEADS_OF = _ORG_HEADS | frozenset({"Hall", "House", "Bank", "Chamber", "Chiefs", "Secretary"})
_PLACE_HEADS = frozenset({"State", "Province", "County", "River", "Sea", "Ocean", "Mountains", "Island", "Islands",
                          "Valley", "Bay", "Lake", "Desert", "Region", "Peninsula", "Strait", "Gulf", "District",
                          "Oblast", "Coast", "Highlands", "Canyon", "Republic", "Kingdom", "Emirates"})
_PLACE_STARTS = frozenset({"Mount", "Lake", "Gulf", "Cape", "Port", "North", "South", "East", "West"})
_SAID = frozenset({"said", "says", "told", "wrote", "added", "explained", "stated", "tweeted", "noted", "argued",
                   "warned", "recalled", "insisted", "announced", "continued", "emphasized", "emphasised"})
# Capitalised words that are never entities on their own: calendar words, demonyms, pronouns, sentence openers.
_NOT_NAMES = frozenset(_words("""
January February March April May June July August September October November December Monday Tuesday Wednesday
Thursday Friday Saturday Sunday Jan. Feb. Mar. Apr. Aug. Sept. Oct. Nov. Dec. I I'm I've A An The This That These
Those It Its He She They We You Our Their His Her My If But And Or So Yet As At In On Of For To By From With When
While Where What Who Why How After Before Since During Although Though However Still Instead Meanwhile Also Then
There Here Now Today Yesterday Tomorrow According Despite Some Many Most All Both Each Every One Two Three Another
Other Such No Not Yes Please Read More Share Click Watch Sign Subscribe Follow Update Updated Photo Video Image Getty
Internet Covid COVID Christmas Easter Ramadan God OK TV AI
GDP CEO CFO COO CTO IPO EV PM AM DNA ID FAQ PDF USB URL PC SUV ATM VIP MP MPs HIV NGO NGOs Fan Vote XML JSON HTML
HTTP HTTPS API APIs SQL CSS GPS LTE LED LCD RAM CPU GPU SSD HDR USD EUR GBP NFT NFTs ETF ETFs CEOs ICU PPE MRT DIY
Class Hall Fame Tickets Ticker Security Last Change Looking Challenges Officials Cases Images Hundreds Thousands
Verified Another Small Main Recent Having Finding Following
"""))
# Adjectives of nationality or belief: not entities alone, but part of "American Airlines", "European Union".
_DEMONYMS = frozenset(_words("""
Western Eastern Northern Southern American Americans Russian Russians Ukrainian Ukrainians British European Europeans
Chinese Japanese German Germans French Italian Spanish Iranian Israeli Palestinian Afghan Afghans Arab Asian African
Indian Korean Mexican Canadian Australian Brazilian Swedish Swiss Turkish Polish Dutch Nigerian Muslim Christian
Christians Jewish Catholic Democrat Republican Democratic Swedes Austrians Dakotans
"""))
# Last words of names we do not report: facilities, events, indexes, laws.
_SKIP_HEADS = frozenset({"Center", "Centre", "Auditorium", "Arena", "Stadium", "Hotel", "Hilton", "Headquarters",
                         "Embassy", "War", "Street", "Avenue", "Road", "Index", "Composite", "Airport", "Prison",
                         "Awards", "Cup", "Championship", "Games", "Olympics", "Prize", "Act", "Bill", "Reserved",
                         "Day", "Festival", "Tour", "Socialism", "Communism", "Advocate"})
_NOUNS_CAPITALISED = frozenset({"de", "lb"})
_PLACE_NOUNS = frozenset({"county", "counties", "province", "provinces", "region", "regions", "oblast", "district"})
_COPYRIGHT = re.compile(r"^(?:©|Copyright\b).*$", re.MULTILINE)
_ACRONYM = re.compile(r"^(?:[A-Z][A-Z0-9&]{1,5}|(?:[A-Z]\.){2,4})$")
_CORPORATE_SUFFIX = re.compile(r",?\s+(?:Inc\.?|Corp\.?|Co\.|Ltd\.?|LLC|PLC|plc|Companies)$")
_POSSESSIVE = re.compile(r"['’]s?$")


_OPENERS = frozenset({"according", "despite", "following", "after", "as", "since", "while", "looking", "finding",
                      "having", "although", "officials", "scientists", "researchers", "analysts", "critics"})
# Lower-case words allowed inside an organisation's name after its head word ("Department of Health and ...").
_ORG_INNER = frozenset({"of", "and", "on", "for"})
_ENGLISH_SMALL = frozenset({"in", "on", "it", "out", "is", "to", "at", "or", "and", "the", "we", "us", "no", "so",
                            "up", "get", "all", "not", "now", "new", "can", "one"})
# fmt: on


@dataclass
class Mention:
    tokens: list[str]
    position: int  # token offset in the article, for ordering
    person_cue: bool = False  # preceded by a title or followed by "said"
    place_cue: bool = False  # "Barry, Cass and Van Buren counties"
    after_the: bool = False  # "the Chargers": a plural name after "the" is a team, band or party
    lower_known: bool = False  # a word of the name is also used in lower case: "Home Depot" (home), not a person


@dataclass
class Found:
    kind: str
    name: str
    count: int = 0
    first: int = 0


def extract_entities(text: str, language: str | None = "en") -> dict[str, list[str]]:
    """{"person": [...], "organization": [...], "place": [...]}, most mentioned first.

    Only the body is read: headlines are in title case, where capitalisation tells nothing. Reads the
    first text.MAX_TEXT_CHARS characters and the first MAX_MENTIONS mentions; every step below is linear
    in those (merging looks names up by surname and suffix instead of comparing all pairs).
    """
    gaz = gazetteer()
    body, found = _dateline(_COPYRIGHT.sub("", clip(text)).strip(), gaz)
    body = _BRACKETED_NAME.sub(r"\1 ", body)
    sentences = [_tokens(s) for s in split_sentences(body)]
    lower_words = {t for sent in sentences for t in sent if t[:1].islower()}
    mentions: list[Mention] = []
    offset = 0
    for sent in sentences:
        mentions.extend(_mentions(sent, offset, lower_words, gaz))
        offset += len(sent)
        if len(mentions) >= MAX_MENTIONS:
            del mentions[MAX_MENTIONS:]
            break
    # News names a person in full once, then by surname: a pair whose last word recurs alone is a person.
    singles = {m.tokens[0] for m in mentions if len(m.tokens) == 1}
    if language in _NOUNS_CAPITALISED:
        singles = set()  # German capitalises every noun: a recurring capitalised word proves nothing
    for mention in mentions:
        kind_name = _classify(mention, gaz, singles)
        if kind_name is not None:
            _add(found, *kind_name, mention.position)
    _merge_people(found)
    _merge_organizations(found)
    return _output(found)


def _tokens(sentence: str) -> list[str]:
    out: list[str] = []
    for tok in _TOKEN.findall(sentence):
        if "-" in tok and all(part in gazetteer().places for part in tok.split("-")):
            out.extend(tok.replace("-", " - ").split())  # "US-China trade": two places
            continue
        # A sentence-final dot glued to a word ("Ukraine.") is punctuation, not an abbreviation.
        glued_dot = tok.endswith(".") and len(tok) > 2 and "." not in tok[:-1] and not tok[:-1].isupper()
        if glued_dot and tok not in _TITLES:
            out.extend((tok[:-1], "."))
        else:
            out.append(tok)
    return out


def _dateline(text: str, gaz: Gazetteer) -> tuple[str, dict[str, Found]]:
    """Datelines name the place (and often the agency) in capitals no other rule reads right."""
    found: dict[str, Found] = {}
    match = _DATELINE.match(text)
    # A city in capitals, or a known place, makes a dateline; "South Dakota Gov. Kristi Noem (R)" does not.
    if not match or not (match.group("city").isupper() or match.group("city").strip() in gaz.places):
        return text, found
    city = match.group("city").strip().title().replace("'S", "'s")
    _add(found, PLACE, gaz.places.get(city, city), -3)
    region = match.group("region")
    if region:
        _add(found, PLACE, gaz.places.get(region, region), -2)
    agency = (match.group("agency") or "").strip()
    if agency and agency[0].isupper():
        _add(found, ORG, gaz.organizations.get(agency, agency), -1)
    return text[match.end() :], found


def _is_possessive(tok: str) -> bool:
    return len(tok) > 3 and tok[-2:] in ("'s", "’s")


def _runs(sent: list[str], gaz: Gazetteer) -> list[tuple[int, list[str]]]:
    """Maximal runs of capitalised tokens. Lower-case words join only inside names: connectors
    ("van", "bin") between capitals, and "of/and/on/for" after an organisation's head word.
    A possessive ends a run: "Vietnam's Communist Party" is two names."""
    runs: list[tuple[int, list[str]]] = []
    i = 0
    while i < len(sent):
        if not sent[i][:1].isupper():
            i += 1
            continue
        start, run = i, [sent[i]]
        i += 1
        in_org = run[0] in _ORG_HEADS_OF
        while i < len(sent) and not (_is_possessive(run[-1]) and run[-1] not in gaz.organizations):
            tok = sent[i]
            nxt = sent[i + 1] if i + 1 < len(sent) else ""
            inner = tok in _ORG_INNER and (in_org or run[-1] in _ORG_HEADS_OF) and nxt[:1].isupper()
            if (tok[:1].isupper() and tok != "I") or inner or (tok in _CONNECTORS and nxt[:1].isupper()):
                run.append(tok)
                in_org = in_org or tok in _ORG_HEADS_OF
                i += 1
            else:
                break
        runs.append((start, run))
    return runs


def _is_title(run: list[str], j: int) -> bool:
    tok = run[j]
    nxt = run[j + 1] if j + 1 < len(run) else ""
    # "Justice Department", "Secretary of State", "Argus Leader Monday": part of a name, not a title.
    if not nxt or nxt in _ORG_HEADS or nxt in _ORG_INNER or nxt in _NOT_NAMES:
        return False
    if tok in _TITLES:
        return True
    return tok in _TITLE_MODIFIERS and nxt in _TITLES


def _place_list_cues(sent: list[str], runs: list[tuple[int, list[str]]]) -> set[int]:
    """Starts of runs listed before "counties"/"provinces": "Barry, Cass and Van Buren counties"."""
    cued: set[int] = set()
    next_start = -1  # start of the following run, when that run is cued
    for start, run in reversed(runs):
        end = start + len(run)
        after = sent[end] if end < len(sent) else ""
        listed = next_start > end and sent[end:next_start] in ([","], ["and"], [",", "and"])
        next_start = start if after in _PLACE_NOUNS or listed else -1
        if next_start >= 0:
            cued.add(start)
    return cued


def _mentions(sent: list[str], offset: int, lower_words: set[str], gaz: Gazetteer) -> list[Mention]:
    """Runs cut at person titles ("NATO Secretary General Jens Stoltenberg" → NATO, Jens Stoltenberg)."""
    out: list[Mention] = []
    runs = _runs(sent, gaz)
    place_cued = _place_list_cues(sent, runs)
    for start, run in runs:
        before = sent[start - 1] if start > 0 else ""
        after = sent[start + len(run)] if start + len(run) < len(sent) else ""
        if before in ("(", "/") or after == "/":
            continue  # tickers "(N225)", case numbers "FHC/ABJ/03": abbreviations of something named nearby
        piece: list[str] = []
        piece_start = start
        titled = before in _TITLES or before == "coach"
        for j, tok in enumerate(run):
            # A run longer than any gazetteer name is no known name: do not join it (O(n²) on long runs).
            if _is_title(run, j) and not (len(run) - j <= gaz.max_name_words and _known(" ".join(run[j:]), gaz)):
                if piece:
                    out.append(Mention(piece, offset + piece_start, titled))
                piece, titled = [], True
                continue
            if not piece:
                piece_start = start + j
            piece.append(tok)
        if piece:
            said = after in _SAID or before == "said"
            out.append(
                Mention(
                    piece, offset + piece_start, titled or said, start in place_cued, after_the=before in ("the", "The")
                )
            )
    cleaned = (_clean(m, sentence_start=(m.position == offset), lower_words=lower_words, gaz=gaz) for m in out)
    return [m for m in cleaned if m is not None]


def _known(name: str, gaz: Gazetteer) -> bool:
    return name in gaz.places or name in gaz.organizations


def _edge_noise(tok: str) -> bool:
    shouted_small_word = tok.isupper() and tok.lower() in _ENGLISH_SMALL  # "Meth is IN SD"
    return tok in _NOT_NAMES or tok in _CONNECTORS or tok in _ORG_INNER or tok == "the" or shouted_small_word


def _clean(m: Mention, sentence_start: bool, lower_words: set[str], gaz: Gazetteer) -> Mention | None:
    """Drop sentence openers and calendar words at the edges, lone demonyms; strip possessives."""
    start, end = 0, len(m.tokens)  # indices, not list.pop(0): that is O(n²) on a long run of noise
    while start < end and (
        _edge_noise(m.tokens[start]) or (sentence_start and start == 0 and _common_word(m.tokens[0], lower_words, gaz))
    ):
        start += 1
    while start < end and _edge_noise(m.tokens[end - 1]):
        end -= 1
    toks = m.tokens[start:end]
    pos = m.position + start
    if not toks or (len(toks) == 1 and toks[0] in _DEMONYMS) or len(toks) > 7:
        return None
    if " ".join(toks) not in gaz.organizations and _is_possessive(toks[-1]):
        toks[-1] = toks[-1][:-2]
    lower_known = any(t.lower() in lower_words for t in toks if t[:1].isupper() and t not in gaz.given_names)
    return Mention(toks, pos, m.person_cue, m.place_cue, m.after_the and pos == m.position, lower_known)


def _common_word(tok: str, lower_words: set[str], gaz: Gazetteer) -> bool:
    """A sentence's first word is capitalised by grammar: keep it only if it is a name elsewhere too."""
    if tok in gaz.places or tok in gaz.organizations or tok in gaz.given_names:
        return False
    return tok.lower() in lower_words or tok.lower() in _OPENERS


def _classify(m: Mention, gaz: Gazetteer, singles: set[str]) -> tuple[str, str] | None:
    """(kind, canonical name), or None when the mention is no entity we can tell."""
    toks = _decapitalise_shouting(m.tokens)
    name = _CORPORATE_SUFFIX.sub("", " ".join(toks))
    if name in gaz.organizations:
        return ORG, gaz.organizations[name]
    if name in gaz.places:
        return PLACE, gaz.places[name]
    if m.place_cue:
        return PLACE, name
    words = name.split()
    if len(words) == 1:
        return _classify_single(name, m, gaz)
    if words[-1] in _SKIP_HEADS:
        return None
    if words[-1] in _ORG_HEADS or (words[0] in _ORG_HEADS and words[1] in _ORG_INNER):
        return ORG, name
    if words[-1] in _PLACE_HEADS or (words[0] in _PLACE_STARTS and " ".join(words[1:]) in gaz.places):
        return PLACE, name
    if any(w in _NOT_NAMES or w in _DEMONYMS for w in words) or len(words) > 4:
        return None
    if words[0] in gaz.given_names or words[0].split("-")[0] in gaz.given_names or m.person_cue:
        return PERSON, name
    # "Bundeskanzler Olaf Scholz", "Dow chief Jane Fraser": a title-like word before a given name.
    named = next((i for i, w in enumerate(words[:-1]) if w in gaz.given_names), None)
    if named is not None and len(words) - named in (2, 3):
        return PERSON, " ".join(words[named:])
    if words[-1] in singles and all(_name_shaped(w, gaz) for w in words):
        return PERSON, name
    return None


def _name_shaped(word: str, gaz: Gazetteer) -> bool:
    """'Mujahid', 'Ngo-Anh', "O'Brien" — not 'AFC', 'North', 'Shanghai' or 'York-listed'."""
    parts = re.split(r"[-'’]", word)
    return (
        all(p[:1].isupper() and p[1:].islower() for p in parts if p)
        and word not in gaz.places
        and word not in _PLACE_STARTS
        and word not in gaz.organizations
    )


def _classify_single(name: str, m: Mention, gaz: Gazetteer) -> tuple[str, str] | None:
    if _ACRONYM.match(name) and len(name.replace(".", "")) >= 3 and name.lower() not in _ENGLISH_SMALL:
        return ORG, name
    if m.after_the and name.endswith("s") and not name.endswith("ss") and name not in gaz.given_names:
        return ORG, name  # "the Chargers", "the Democrats"
    if m.person_cue and not name.isupper():
        return PERSON, name
    return "unknown", name  # may still be a known person's surname: settled in _merge_people


def _decapitalise_shouting(toks: list[str]) -> list[str]:
    """'THE HOME DEPOT INC.' in a stock table → 'Home Depot Inc.' (acronyms stay as they are)."""
    if len(toks) > 1 and sum(t.isupper() and len(t) > 3 for t in toks) >= 2:
        toks = [t.title() if t.isupper() and len(t) > 3 else t for t in toks]
        while toks and toks[0] in ("THE", "The"):
            toks = toks[1:]
    return toks or ["?"]


def _add(found: dict[str, Found], kind: str, name: str, position: int) -> None:
    item = found.setdefault(f"{kind}\t{name}", Found(kind, name, first=position))
    item.count += 1


def _merge_people(found: dict[str, Found]) -> None:
    """One person per article under the longest form: 'Putin' and 'Vladimir Putin' → 'Vladimir Putin'.

    A lone surname also wins over other readings ("Jackson" the city) once its full name was seen.
    Every shorter form of a surname goes to one person: of the people with the most words ending with
    that surname, the most mentioned (the first on a tie). Found by surname, not by comparing all pairs.
    """
    longest: dict[str, tuple[int, Found]] = {}  # surname → (words, person) of its longest, most mentioned form
    for person in (f for f in found.values() if f.kind == PERSON):
        words = person.name.split()
        best = longest.get(words[-1]) if words else None
        if words and (best is None or (len(words), person.count) > (best[0], best[1].count)):
            longest[words[-1]] = (len(words), person)
    for key, item in list(found.items()):
        if item.kind == ORG or (item.kind == PLACE and len(item.name.split()) > 1):
            continue
        words = item.name.split()
        best = longest.get(words[-1]) if words else None
        if best is not None and len(words) < best[0]:  # same surname, fewer words: 'Stoltenberg'
            target = best[1]
            target.count += item.count
            target.first = min(target.first, item.first)
            del found[key]
    for key in [k for k, f in found.items() if f.kind == "unknown"]:
        del found[key]


def _merge_organizations(found: dict[str, Found]) -> None:
    """'Senate' after 'Nigerian Senate', 'Argus Leader' after 'Sioux Falls Argus Leader': one organisation."""
    by_suffix: dict[str, list[Found]] = {}  # "Argus Leader", "Leader" → [Sioux Falls Argus Leader, ...]
    for org in (f for f in found.values() if f.kind == ORG):
        space = org.name.find(" ")
        while space >= 0:
            by_suffix.setdefault(org.name[space + 1 :], []).append(org)
            space = org.name.find(" ", space + 1)
    for key, item in list(found.items()):
        if item.kind != ORG:
            continue
        longer = by_suffix.get(item.name)  # the organisations whose name ends with " " + item.name
        if longer:
            target = max(longer, key=lambda o: o.count)
            target.count += item.count
            del found[key]


def _output(found: dict[str, Found]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {PERSON: [], ORG: [], PLACE: []}
    for item in sorted(found.values(), key=lambda f: (-f.count, f.first)):
        names = result[item.kind]
        if len(names) < MAX_PER_TYPE and item.name not in names:
            names.append(item.name)
    return result
