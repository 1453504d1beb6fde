"""smallest_sync.text: whole sentences out of a token stream, each short enough to send."""
from __future__ import annotations

import random
import unicodedata
from typing import Iterable, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smallest_sync.text import ABBREVIATIONS, MAX_CHARS, SentenceAggregator, split_text


def stream(chunks: Iterable[str], **options: Optional[int]) -> list[str]:
    """The pieces a fresh aggregator releases for ``chunks``, flush included."""
    aggregator = SentenceAggregator(**options)  # type: ignore[arg-type]
    pieces: list[str] = []
    for chunk in chunks:
        pieces += aggregator.feed(chunk)
    return pieces + aggregator.flush()


def random_chunks(text: str, seed: int, longest: int = 12) -> list[str]:
    rng = random.Random(seed)
    chunks, i = [], 0
    while i < len(text):
        size = rng.randint(1, longest)
        chunks.append(text[i:i + size])
        i += size
    return chunks


def no_space(text: str) -> str:
    return "".join(text.split())


CORPUS = (
    "Well, I was thinking about this for quite a while, and you are right. "
    "Mr. Smith paid $1,000.50 for v2.0 of the app at 3 p.m. yesterday! "
    'Is that true?! J. R. R. Tolkien wrote "The Hobbit." Visit example.com, or mail a.b@c.io today... '
    "Wait… really? (Yes.) She said 'no.'\n\nNew paragraph here\nwith a line break. "
    "你好。我是学生！「好。」यह एक वाक्य है। दूसरा॥ Emoji 👍🏽 and שלום עולם. مرحبا؟ Done"
)

CORPUS_PIECES = [
    "Well, I was thinking about this for quite a while, and you are right.",
    "Mr. Smith paid $1,000.50 for v2.0 of the app at 3 p.m. yesterday!",
    "Is that true?!",
    'J. R. R. Tolkien wrote "The Hobbit."',
    "Visit example.com, or mail a.b@c.io today...",
    "Wait…",
    "really?",
    "(Yes.)",
    "She said 'no.'",
    "New paragraph here\nwith a line break.",
    "你好。",
    "我是学生！",
    "「好。」",
    "यह एक वाक्य है।",
    "दूसरा॥",
    "Emoji 👍🏽 and שלום עולם.",
    "مرحبا؟",
    "Done",
]


# --- API -------------------------------------------------------------------


def test_max_chars_is_the_services_advised_limit() -> None:
    assert MAX_CHARS == 250
    assert SentenceAggregator().max_chars == 250
    assert SentenceAggregator().first_fragment_min_chars == 30


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        SentenceAggregator(100)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "options, error",
    [
        ({"max_chars": 0}, ValueError),
        ({"max_chars": -5}, ValueError),
        ({"max_chars": 2.5}, TypeError),
        ({"max_chars": True}, TypeError),
        ({"first_fragment_min_chars": -1}, ValueError),
        ({"first_fragment_min_chars": "30"}, TypeError),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        SentenceAggregator(**options)  # type: ignore[arg-type]


def test_feed_refuses_what_is_not_text() -> None:
    with pytest.raises(TypeError):
        SentenceAggregator().feed(b"bytes")  # type: ignore[arg-type]


def test_feed_returns_a_list_and_an_empty_token_changes_nothing() -> None:
    aggregator = SentenceAggregator()
    assert aggregator.feed("") == []
    assert aggregator.feed("Hello") == []
    assert aggregator.feed("") == []
    assert aggregator.flush() == ["Hello"]


def test_the_corpus_splits_into_its_sentences() -> None:
    assert split_text(CORPUS) == CORPUS_PIECES


# --- sentence ends -----------------------------------------------------------


@pytest.mark.parametrize(
    "text, pieces",
    [
        ("One. Two! Three? Four… Five", ["One.", "Two!", "Three?", "Four…", "Five"]),
        ("Really?! Yes!! No?? Hmm... ok", ["Really?!", "Yes!!", "No??", "Hmm...", "ok"]),
        ('He said "Stop." Then left.', ['He said "Stop."', "Then left."]),
        ("(Is it?) Yes.", ["(Is it?)", "Yes."]),
        ("It's 'fine!' Next.", ["It's 'fine!'", "Next."]),
        ("“Quoted.” And «this?» Then [done.] End", ["“Quoted.”", "And «this?»", "Then [done.]", "End"]),
        ('She asked "why?!" Then', ['She asked "why?!"', "Then"]),
    ],
)
def test_sentence_ends_with_runs_and_closers(text: str, pieces: list[str]) -> None:
    assert split_text(text) == pieces


@pytest.mark.parametrize("text", ["Hello.World", "Wait!What", "Why?Because", "Well...then", "dots…here"])
def test_a_latin_mark_needs_whitespace_after_it(text: str) -> None:
    assert split_text(text) == [text]


def test_a_latin_end_is_held_until_the_next_token_shows_whitespace() -> None:
    aggregator = SentenceAggregator(first_fragment_min_chars=None)
    assert aggregator.feed("Hello there.") == []
    assert aggregator.feed(" How") == ["Hello there."]
    assert aggregator.feed(" are you?") == []
    assert aggregator.feed("\n") == ["How are you?"]
    assert aggregator.flush() == []


def test_a_sentence_end_is_released_at_flush() -> None:
    aggregator = SentenceAggregator()
    assert aggregator.feed("All done.") == []
    assert aggregator.flush() == ["All done."]


@pytest.mark.parametrize(
    "text",
    [
        "Pi is 3.14 today.",
        "It costs 1,000.50 dollars.",
        "Install v2.0 now.",
        "Version 10.4.2 is out.",
        "At 12:30.5 seconds.",
    ],
)
def test_numbers_are_not_sentence_ends(text: str) -> None:
    assert split_text(text + " Next") == [text, "Next"]


def test_a_decimal_split_across_tokens_is_not_a_sentence_end() -> None:
    aggregator = SentenceAggregator(first_fragment_min_chars=None)
    assert aggregator.feed("Pi is 3.") == []
    assert aggregator.feed("14") == []
    assert aggregator.feed(" exactly. ") == ["Pi is 3.14 exactly."]
    assert aggregator.feed("Cost: $1,") == []
    assert aggregator.feed("000.") == []
    assert aggregator.feed("50") == []
    assert aggregator.flush() == ["Cost: $1,000.50"]


def test_a_number_that_ends_a_sentence_still_ends_it() -> None:
    assert split_text("I counted to 3. Then I stopped. It was 2024. Yes") == [
        "I counted to 3.", "Then I stopped.", "It was 2024.", "Yes",
    ]


def test_list_numbering_is_not_a_sentence_of_its_own() -> None:
    assert split_text("1. Preheat the oven.\n2. Mix the flour.\n10. Bake it.") == [
        "1. Preheat the oven.", "2. Mix the flour.", "10. Bake it.",
    ]


def test_the_abbreviation_list_is_small_and_lower_case() -> None:
    assert isinstance(ABBREVIATIONS, tuple) and len(ABBREVIATIONS) < 40
    assert all(word == word.lower() for word in ABBREVIATIONS)
    for word in ("mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "a.m", "p.m",
                 "u.s", "inc", "ltd", "co", "no", "fig", "approx"):
        assert word in ABBREVIATIONS


@pytest.mark.parametrize("word", ABBREVIATIONS)
def test_abbreviations_are_not_sentence_ends(word: str) -> None:
    for spelling in (word, word.upper(), word.capitalize()):
        text = f"See {spelling}. here and there."
        assert split_text(text + " Next") == [text, "Next"], spelling


@pytest.mark.parametrize(
    "text",
    [
        "Mr. and Mrs. Smith met Dr. Jones and Prof. Brown.",
        "Apples vs. pears, e.g. red ones, i.e. the best, etc. are fine.",
        "We met at 9 a.m. and left at 5 P.M. on the same day.",
        "Made in the U.S. by Acme Inc. and Foo Ltd. and Bar Co. for sure.",
        "See Fig. 3 and No. 5 for approx. values.",
        "The U.S.A. and the U.K. agreed.",
        "St. Louis and Mt. Fuji are places.",
    ],
)
def test_abbreviations_in_sentences(text: str) -> None:
    assert split_text(text + " Next one.") == [text, "Next one."]


def test_a_word_that_only_ends_like_an_abbreviation_ends_a_sentence() -> None:
    assert split_text("I saw a bird. Then a hamster. Then Mister. Done") == [
        "I saw a bird.", "Then a hamster.", "Then Mister.", "Done",
    ]


def test_single_capital_initials_are_not_sentence_ends() -> None:
    assert split_text("J. R. R. Tolkien wrote it. George R. R. Martin too.") == [
        "J. R. R. Tolkien wrote it.", "George R. R. Martin too.",
    ]


def test_lower_case_single_letters_end_sentences() -> None:
    assert split_text("Choose plan a. Then relax.") == ["Choose plan a.", "Then relax."]


@pytest.mark.parametrize(
    "text",
    [
        "Visit example.com for more.",
        "Write to a.b@c.io today.",
        "Open file.txt and run setup.py now.",
        "Go to https://docs.example.org/v1.2/index.html?x=1.5 first.",
    ],
)
def test_urls_emails_and_file_names_are_not_sentence_ends(text: str) -> None:
    assert split_text(text + " Next") == [text, "Next"]


def test_a_sentence_may_end_with_a_url() -> None:
    assert split_text("Visit example.com. Then mail a.b@c.io. Done") == [
        "Visit example.com.", "Then mail a.b@c.io.", "Done",
    ]


def test_closers_turn_the_abbreviation_exception_off() -> None:
    assert split_text('He wrote "Dr." Then he left.') == ['He wrote "Dr."', "Then he left."]


# --- other scripts -----------------------------------------------------------


def test_cjk_sentences_end_without_spaces() -> None:
    assert split_text("你好。我是学生！你呢？好的") == ["你好。", "我是学生！", "你呢？", "好的"]
    assert split_text("こんにちは。元気ですか？はい！") == ["こんにちは。", "元気ですか？", "はい！"]


def test_cjk_closing_brackets_stay_with_their_sentence() -> None:
    assert split_text("他说：「你好。」然后走了。『再见！』") == ["他说：「你好。」", "然后走了。", "『再见！』"]
    assert split_text("真的吗？！是的。") == ["真的吗？！", "是的。"]


def test_a_cjk_end_is_released_with_the_next_character() -> None:
    aggregator = SentenceAggregator(first_fragment_min_chars=None)
    assert aggregator.feed("你好。") == []  # a closing bracket may still follow
    assert aggregator.feed("我") == ["你好。"]
    assert aggregator.feed("是学生。」") == []
    assert aggregator.feed("好") == ["我是学生。」"]
    assert aggregator.flush() == ["好"]


def test_cjk_text_with_latin_marks_and_decimals() -> None:
    assert split_text("价格是3.5元。谢谢。") == ["价格是3.5元。", "谢谢。"]


def test_hindi_sentences_end_at_the_danda() -> None:
    text = "यह पहला वाक्य है। यह दूसरा वाक्य है॥ क्या यह तीसरा है? हाँ।"
    assert split_text(text) == ["यह पहला वाक्य है।", "यह दूसरा वाक्य है॥", "क्या यह तीसरा है?", "हाँ।"]
    assert split_text("पहला।दूसरा।") == ["पहला।", "दूसरा।"]


def test_emoji_and_rtl_text_pass_through_unchanged() -> None:
    text = "Hello 👋🏽 world 👨\u200d👩\u200d👧! שלום עולם. مرحبا بالعالم؟ Flags 🇫🇷🇯🇵 ok"
    assert split_text(text) == [
        "Hello 👋🏽 world 👨\u200d👩\u200d👧!", "שלום עולם.", "مرحبا بالعالم؟", "Flags 🇫🇷🇯🇵 ok",
    ]
    assert " ".join(split_text(text)) == text
    assert stream(list(text)) == split_text(text)


# --- paragraphs and whitespace -----------------------------------------------


@pytest.mark.parametrize("gap", ["\n\n", "\r\n\r\n", "\n \n", "\n\t\n\n", " \n\n ", "\u2029"])
def test_a_blank_line_ends_a_sentence_without_punctuation(gap: str) -> None:
    assert split_text(f"A heading{gap}Some body text") == ["A heading", "Some body text"]


def test_a_single_line_break_stays_inside_the_piece() -> None:
    assert split_text("Roses are red\nviolets are blue.\r\nSugar") == ["Roses are red\nviolets are blue.", "Sugar"]


def test_a_paragraph_break_is_found_while_streaming() -> None:
    aggregator = SentenceAggregator(first_fragment_min_chars=None)
    assert aggregator.feed("Heading") == []
    assert aggregator.feed("\n") == []
    assert aggregator.feed("   \n") == ["Heading"]
    assert aggregator.feed("\n\nBody") == []
    assert aggregator.flush() == ["Body"]


def test_inner_whitespace_is_kept_verbatim() -> None:
    text = "Tabs\tand  double  spaces\nand a newline."
    assert split_text(f"  \n {text}   \n\n  ") == [text]


@pytest.mark.parametrize("text", ["", " ", "\n\n\n", " \t \r\n ", "\u2029 \u3000"])
def test_whitespace_only_gives_no_pieces(text: str) -> None:
    assert split_text(text) == []
    aggregator = SentenceAggregator()
    assert aggregator.feed(text) == []
    assert aggregator.flush() == []


def test_pieces_are_stripped() -> None:
    for piece in stream(random_chunks("  One.   Two!\n\n\n  Three?  \t Four  ", 3)):
        assert piece == piece.strip() and piece


# --- the early first fragment --------------------------------------------------


def test_the_first_clause_is_released_early() -> None:
    aggregator = SentenceAggregator()
    pieces: list[str] = []
    for char in "Well, I was thinking about this for a while, and I think you are right. Sure, ok.":
        pieces += aggregator.feed(char)
    assert pieces == ["Well, I was thinking about this for a while,", "and I think you are right."]
    assert aggregator.flush() == ["Sure, ok."]


def test_the_first_fragment_is_released_as_soon_as_whitespace_follows_the_boundary() -> None:
    aggregator = SentenceAggregator(first_fragment_min_chars=10)
    assert aggregator.feed("Short, then a longer clause;") == []
    assert aggregator.feed(" and") == ["Short, then a longer clause;"]
    assert aggregator.feed(" more, words, here.") == []
    assert aggregator.flush() == ["and more, words, here."]


def test_a_short_first_clause_is_not_released_early() -> None:
    assert stream(["Yes, sure, fine. Next"]) == ["Yes, sure, fine.", "Next"]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("Here is what I found out today: it works well.", "Here is what I found out today:"),
        ("The weather tomorrow looks lovely — sunny all day.", "The weather tomorrow looks lovely —"),
        ("The weather tomorrow looks lovely - sunny all day.", "The weather tomorrow looks lovely -"),
        ("The weather tomorrow looks lovely – sunny all day.", "The weather tomorrow looks lovely –"),
        ('He said "we will meet at the station," and left.', 'He said "we will meet at the station,"'),
        ("今天天气很好，我们去公园散步吧，好吗？", "今天天气很好，"),
        ("今天天气很好、我们去公园散步吧。", "今天天气很好、"),
    ],
)
def test_first_fragment_clause_boundaries(text: str, fragment: str) -> None:
    min_chars = 5 if fragment.startswith("今") else 20
    pieces = stream(text, first_fragment_min_chars=min_chars)
    assert pieces[0] == fragment
    assert no_space("".join(pieces)) == no_space(text)


@pytest.mark.parametrize(
    "text",
    [
        "The total came to about 1,000,000 dollars in the end.",
        "We will meet again at 10:30 in the morning tomorrow.",
        "Yes, this is a well-known and long-standing fact. Yes",  # its comma comes too early
        "Things to pack for the trip\n- a hat\n- a coat",
        "Look at https://example.com/a,b;c:d for the details.",
    ],
)
def test_not_first_fragment_boundaries(text: str) -> None:
    assert stream(random_chunks(text, 5), first_fragment_min_chars=20) == split_text(text)


def test_only_the_first_piece_of_a_stream_is_a_fragment() -> None:
    text = "First of all, this is the opening sentence, isn't it. Then, after that, a second sentence follows, slowly."
    pieces = stream(text, first_fragment_min_chars=5)
    assert pieces == [
        "First of all,", "this is the opening sentence, isn't it.",
        "Then, after that, a second sentence follows, slowly.",
    ]


def test_a_whole_first_sentence_means_no_fragment() -> None:
    text = "Hi. Then, after a long pause of thinking, more text came."
    assert stream(text, first_fragment_min_chars=0) == ["Hi.", "Then, after a long pause of thinking, more text came."]


def test_zero_allows_any_clause_boundary_and_none_disables_the_rule() -> None:
    text = "Yes, I agree with you entirely."
    assert stream(text, first_fragment_min_chars=0) == ["Yes,", "I agree with you entirely."]
    assert stream(text, first_fragment_min_chars=None) == [text]


def test_flush_ends_the_stream_and_the_next_feed_starts_a_new_one() -> None:
    aggregator = SentenceAggregator(first_fragment_min_chars=5)
    first = "Hello there, friend of mine."
    assert aggregator.feed(first + " Still") == ["Hello there,", "friend of mine."]
    assert aggregator.feed(", going on, and on.") == []
    assert aggregator.flush() == ["Still, going on, and on."]
    assert aggregator.flush() == []
    assert aggregator.feed(first + " ") == ["Hello there,", "friend of mine."]
    assert aggregator.flush() == []


def test_flush_does_not_split_off_a_fragment_waiting_for_its_next_character() -> None:
    aggregator = SentenceAggregator(first_fragment_min_chars=5)
    assert aggregator.feed("Hello there friend,") == []
    assert aggregator.flush() == ["Hello there friend,"]


# --- length ---------------------------------------------------------------------


def test_a_thousand_character_sentence_without_punctuation() -> None:
    words = [f"w{i:03d}" for i in range(200)]
    words[-1] += "x"
    text = " ".join(words)
    assert len(text) == 1000
    pieces = split_text(text)
    assert [len(piece) for piece in pieces] == [249, 249, 249, 250]  # as full as whole words allow
    assert " ".join(pieces) == text  # cut at whitespace, never inside a word
    assert stream(text) == pieces
    aggregator = SentenceAggregator()  # and streaming releases the pieces while the sentence grows
    released: list[str] = []
    for word in words[:60]:
        released += aggregator.feed(word + " ")
    assert released == pieces[:1]


def test_a_long_sentence_is_cut_at_its_last_clause_boundary() -> None:
    text = "alpha " * 20 + "beta, " + "gamma " * 20 + "delta; " + "omega " * 40 + "end."
    pieces = split_text(text, max_chars=200)
    assert pieces[0] == "alpha " * 20 + "beta,"  # not at the later whitespace
    assert pieces[1] == "gamma " * 20 + "delta;"
    assert all(len(piece) <= 200 for piece in pieces)
    assert no_space("".join(pieces)) == no_space(text)


def test_a_long_text_without_spaces_is_cut_hard() -> None:
    text = "".join(chr(0x4E00 + i % 500) for i in range(600))
    pieces = split_text(text)
    assert [len(piece) for piece in pieces] == [250, 250, 100]
    assert "".join(pieces) == text
    assert stream(list(text)) == pieces
    assert stream(random_chunks(text, 11)) == pieces


def test_a_long_cjk_sentence_is_cut_at_its_clause_marks() -> None:
    clause = "我们今天去公园散步" * 3 + "，"
    text = clause * 12 + "好。"
    pieces = split_text(text, max_chars=100)
    assert all(len(piece) <= 100 and piece.endswith(("，", "。")) for piece in pieces)
    assert "".join(pieces) == text


@pytest.mark.parametrize(
    "unit",
    ["e\u0301", "क्षि", "👨\u200d👩\u200d👧", "👍🏽", "🇫🇷", "❤\ufe0f", "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"],
)
@pytest.mark.parametrize("offset", [0, 1, 2])
def test_hard_cuts_do_not_split_a_character_from_its_marks(unit: str, offset: int) -> None:
    text = "x" * offset + unit * (600 // len(unit))
    pieces = split_text(text, max_chars=100)
    assert "".join(pieces) == text
    assert all(len(piece) <= 100 for piece in pieces)
    units = {0} | {offset + k * len(unit) for k in range(600)}  # where a whole unit starts
    boundary = 0
    for piece in pieces[:-1]:
        boundary += len(piece)
        assert boundary in units, (piece[-3:], pieces[pieces.index(piece) + 1][:3])


def test_a_hard_cut_never_starts_a_piece_with_a_combining_mark() -> None:
    text = "a" + "b\u0301\u0302" * 300
    for piece in split_text(text, max_chars=50):
        assert not unicodedata.combining(piece[0])


def test_marks_only_are_cut_anyway() -> None:
    text = "\u0301" * 120
    assert split_text(text, max_chars=50) == ["\u0301" * 50, "\u0301" * 50, "\u0301" * 20]


def test_a_long_run_of_marks_is_cut() -> None:
    assert split_text("!" * 600) == ["!" * 250, "!" * 250, "!" * 100]


def test_a_long_url_is_cut_hard() -> None:
    url = "https://example.com/" + "a" * 300
    assert split_text(f"See {url} now.") == ["See", url[:250], url[250:] + " now."]


@pytest.mark.parametrize("max_chars", [1, 2, 3, 7, 40])
def test_tiny_limits(max_chars: int) -> None:
    pieces = split_text(CORPUS, max_chars=max_chars)
    assert all(0 < len(piece) <= max_chars for piece in pieces)
    assert no_space("".join(pieces)) == no_space(CORPUS)
    assert stream(CORPUS, max_chars=max_chars, first_fragment_min_chars=None) == pieces


def test_long_whitespace_inside_a_piece_is_kept_when_it_fits() -> None:
    text = "a" + " " * 100 + "b."
    assert split_text(text) == [text]
    assert stream(list(text)) == [text]
    assert split_text("a" + " " * 300 + "b.") == ["a", "b."]
    assert stream(list("a" + " " * 300 + "b.")) == ["a", "b."]


# --- streaming is independent of the chunking ------------------------------------


def test_streaming_character_by_character_matches_split_text() -> None:
    assert stream(list(CORPUS), first_fragment_min_chars=None) == CORPUS_PIECES


@pytest.mark.parametrize("seed", range(10))
def test_streaming_random_chunks_matches_split_text(seed: int) -> None:
    chunks = random_chunks(CORPUS, seed)
    assert "".join(chunks) == CORPUS
    assert stream(chunks, first_fragment_min_chars=None) == CORPUS_PIECES


@pytest.mark.parametrize("seed", range(10))
def test_streaming_with_the_first_fragment_differs_only_in_the_first_sentence(seed: int) -> None:
    for chunks in (list(CORPUS), random_chunks(CORPUS, seed), [CORPUS]):
        pieces = stream(chunks)
        assert pieces[0] == "Well, I was thinking about this for quite a while,"
        assert pieces[0] + " " + pieces[1] == CORPUS_PIECES[0]
        assert pieces[2:] == CORPUS_PIECES[1:]


def test_split_text_is_feeding_the_whole_text_and_flushing() -> None:
    for text in (CORPUS, "word " * 300, "x" * 700, "A, b. " * 90):
        aggregator = SentenceAggregator(first_fragment_min_chars=None)
        assert split_text(text) == aggregator.feed(text) + aggregator.flush()
        aggregator = SentenceAggregator(max_chars=60, first_fragment_min_chars=None)
        assert split_text(text, max_chars=60) == aggregator.feed(text) + aggregator.flush()


# --- properties ----------------------------------------------------------------

INTERESTING = list(
    "ab Z.,;:!?…-—–\"')」。！？，、।॥\n\t 3Jé\u0301👍🏽🇫🇷\u200d\u2029"
) + ["Mr.", "e.g.", "3.14", " - ", "\n\n", "...", "?!", "www.a.io", "\r\n"]

texts = st.lists(st.sampled_from(INTERESTING) | st.characters(), max_size=120).map("".join)

HYPOTHESIS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@HYPOTHESIS
@given(text=texts, max_chars=st.integers(1, 60))
def test_nothing_is_lost_reordered_or_too_long(text: str, max_chars: int) -> None:
    pieces = split_text(text, max_chars=max_chars)
    assert no_space("".join(pieces)) == no_space(text)
    for piece in pieces:
        assert 0 < len(piece) <= max_chars
        assert piece == piece.strip()
        assert piece in text  # inner whitespace verbatim


@HYPOTHESIS
@given(
    text=texts,
    max_chars=st.integers(1, 60),
    first=st.one_of(st.none(), st.integers(0, 40)),
    cuts=st.lists(st.integers(0, 120), max_size=30),
)
def test_any_chunking_gives_the_same_pieces(text: str, max_chars: int, first: Optional[int], cuts: list[int]) -> None:
    bounds = sorted({0, len(text), *(cut for cut in cuts if cut < len(text))})
    chunks = [text[a:b] for a, b in zip(bounds, bounds[1:])]  # pairwise() is 3.10+
    whole = stream([text], max_chars=max_chars, first_fragment_min_chars=first)
    assert stream(chunks, max_chars=max_chars, first_fragment_min_chars=first) == whole
    assert stream(list(text), max_chars=max_chars, first_fragment_min_chars=first) == whole
    if first is None:
        assert whole == split_text(text, max_chars=max_chars)
    assert no_space("".join(whole)) == no_space(text)
    assert all(0 < len(piece) <= max_chars and piece == piece.strip() for piece in whole)


# --- performance ----------------------------------------------------------------

CYCLE = CORPUS_PIECES[:-1] + ["Done."]  # the pieces of each CORPUS + ".\n\n"


@pytest.mark.timeout(20)
def test_two_hundred_thousand_one_character_tokens() -> None:
    text = ((CORPUS + ".\n\n") * (200_000 // len(CORPUS) + 1))[:200_000]
    aggregator = SentenceAggregator()
    pieces: list[str] = []
    for char in text:
        pieces += aggregator.feed(char)
    pieces += aggregator.flush()
    expected = split_text(text)
    assert expected[: 3 * len(CYCLE)] == CYCLE * 3
    assert pieces[0] + " " + pieces[1] == expected[0]  # the early first fragment
    assert pieces[2:] == expected[1:]


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    "text",
    [
        "x" * 200_000,  # no spaces, no punctuation
        "word " * 40_000,  # no punctuation
        "a" + " " * 200_000 + "b",  # a flood of whitespace
        "a" + " \n" + " " * 200_000 + "\nb",  # a flood inside a paragraph break
        "." * 200_000,
        "!)" * 100_000,
    ],
)
def test_pathological_streams_stay_linear(text: str) -> None:
    aggregator = SentenceAggregator()
    pieces: list[str] = []
    for char in text:
        pieces += aggregator.feed(char)
        assert len(aggregator._buf) <= 4 * (MAX_CHARS + 1)  # the buffer never holds the whole stream
    pieces += aggregator.flush()
    assert no_space("".join(pieces)) == no_space(text)
    assert all(0 < len(piece) <= MAX_CHARS for piece in pieces)


@pytest.mark.timeout(20)
def test_split_text_of_a_megabyte() -> None:
    copies = 1_000_000 // len(CORPUS)
    assert split_text((CORPUS + ".\n\n") * copies) == CYCLE * copies
    assert len(split_text("y" * 1_000_000)) == 4000
