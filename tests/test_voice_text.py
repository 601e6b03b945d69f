"""Markdown -> speakable text, and the sentence chunker on streamed answers."""

from __future__ import annotations

import pytest

from harmony_tui.voice.sentences import SentenceChunker, split_sentences
from harmony_tui.voice.speakable import short_url, to_speakable

ANSWER = """Hello there! Dr. Smith paid $3.50 for it, e.g. the blue one. Is that J. R. Tolkien? Yes.

# Steps
Here is the code:

```python
print("a. b. c.")
x = 1.5
```

| Name | Age |
|---|---|
| Ann | 3 |
| Bob | 4 |

1. First item. Really.
2. Second item
- bullet one

Done."""

PIECES = [
    "Hello there!", "Dr. Smith paid $3.50 for it, e.g. the blue one.",
    "Is that J. R. Tolkien?", "Yes.", "# Steps", "Here is the code:",
    '```python\nprint("a. b. c.")\nx = 1.5\n```',
    "| Name | Age |\n|---|---|\n| Ann | 3 |\n| Bob | 4 |",
    "1. First item.", "Really.", "2. Second item", "- bullet one", "Done.",
]


def test_a_whole_answer_splits_into_sentences_and_whole_blocks():
    assert split_sentences(ANSWER) == PIECES


@pytest.mark.parametrize("step", [1, 2, 3, 7, 50])
def test_streamed_deltas_give_the_same_pieces_as_the_whole_text(step):
    chunker = SentenceChunker()
    pieces = []
    for start in range(0, len(ANSWER), step):
        pieces += chunker.feed(ANSWER[start:start + step])
    assert pieces + chunker.flush() == PIECES


def test_a_sentence_comes_out_as_soon_as_the_next_word_begins():
    chunker = SentenceChunker()
    assert chunker.feed("The capital of France is Paris.") == []  # could be "Paris.com"
    assert chunker.feed(" ") == []  # could be followed by a lower-case continuation
    assert chunker.feed("It") == ["The capital of France is Paris."]
    assert chunker.feed(" is big") == []
    assert chunker.flush() == ["It is big"]


def test_a_code_block_is_never_split_and_waits_for_its_closing_fence():
    chunker = SentenceChunker()
    assert chunker.feed("Look:\n```sh\necho one. Two.\n") == ["Look:"]
    assert chunker.feed("echo three.\n") == []
    assert chunker.feed("```\nAfter.") == ["```sh\necho one. Two.\necho three.\n```"]
    assert chunker.flush() == ["After."]


def test_an_unterminated_code_block_is_flushed_whole_at_the_end():
    chunker = SentenceChunker()
    assert chunker.feed("```js\nlet a = 1. b\n") == []
    assert chunker.flush() == ["```js\nlet a = 1. b"]


def test_decimals_lowercase_continuations_and_ellipses():
    assert split_sentences("Pi is 3.14 today. Use approx. five cups... Then stir.") == [
        "Pi is 3.14 today.", "Use approx. five cups...", "Then stir."]
    assert split_sentences("It costs 5 dollars. and more") == ["It costs 5 dollars. and more"]


def test_a_very_long_sentence_is_cut_after_a_comma():
    text = ", ".join(["word " * 12] * 8) + "."
    pieces = split_sentences(text)
    assert len(pieces) > 1 and all(len(p) <= 300 for p in pieces)
    assert " ".join(pieces).split() == text.split()


def test_the_chunker_is_reusable_after_flush():
    chunker = SentenceChunker()
    chunker.feed("```\ncode")
    chunker.flush()
    assert chunker.feed("Next answer. Yes") == ["Next answer."]


@pytest.mark.parametrize(("markdown", "spoken"), [
    ("Here is **bold**, *italic*, __strong__, _em_ and ~~gone~~ text.",
     "Here is bold, italic, strong, em and gone text."),
    ("Run `pip install x` now.", "Run pip install x now."),
    ("See [the docs](https://example.com/a/b?c=d) and ![a cat](cat.png).",
     "See the docs and a cat."),
    ("Read https://www.python.org/3/library/re.html, then <https://docs.rs/regex>.",
     "Read python.org, then docs.rs."),
    ("# Big title", "Big title."),
    ("### Done already!", "Done already!"),
    ("- first point\n- second point", "first point. second point."),
    ("1. one\n2) two", "one. two."),
    ("> quoted wisdom", "quoted wisdom"),
    ("---", ""),
    ("snake_case_name stays, and so does 2 * 3 * 4.",
     "snake_case_name stays, and so does 2 * 3 * 4."),
    ("<b>bold</b> html", "bold html"),
])
def test_inline_markdown_becomes_plain_words(markdown, spoken):
    assert to_speakable(markdown) == spoken


@pytest.mark.parametrize(("fence", "spoken"), [
    ("```python\nprint(1)\n```", "Here is a Python code block."),
    ("```py\nprint(1)\n```", "Here is a Python code block."),
    ("```\nls -la\n```", "Here is a code block."),
    ("~~~ elixir\nIO.puts 1\n~~~", "Here is an elixir code block."),
    ("```rust\nfn main() {}", "Here is a Rust code block."),  # unterminated
])
def test_code_blocks_are_announced_not_read(fence, spoken):
    assert to_speakable(fence) == spoken


def test_tables_are_summarised():
    table = "| Name | Age | City |\n|:---|---:|---|\n| Ann | 3 | Oslo |\n| Bob | 4 | Rome |"
    assert to_speakable(table) == "A table with 2 rows and columns Name, Age and City."
    assert to_speakable("| a | b |\n|---|---|\n| 1 | 2 |") == (
        "A table with 1 row and columns a and b.")


def test_a_whole_answer_reads_naturally():
    spoken = to_speakable(ANSWER)
    assert "print" not in spoken and "|" not in spoken and "#" not in spoken
    assert "Here is a Python code block." in spoken
    assert "A table with 2 rows and columns Name and Age." in spoken
    assert spoken.startswith("Hello there! Dr. Smith paid $3.50")


def test_short_url_keeps_the_host():
    assert short_url("https://www.example.org/x") == "example.org"
    assert short_url("www.github.com/a") == "github.com"
