"""The word error rate the speech tests hold transcripts to."""

from __future__ import annotations

import pytest

from tests.helpers.speech import word_error_rate, words


def test_identical_text_scores_zero_whatever_the_case_and_punctuation() -> None:
    assert word_error_rate("My sister's bicycle.", "my Sister's, BICYCLE") == 0.0


def test_words_are_normalised() -> None:
    assert words("Hello, World! It's 9 o'clock...") == ["hello", "world", "it's", "9", "o'clock"]


@pytest.mark.parametrize(
    ("hypothesis", "errors"),
    [
        ("the cat sat on the mat", 0),
        ("the cat sit on the mat", 1),  # substitution
        ("the cat on the mat", 1),  # deletion
        ("the big cat sat on the mat", 1),  # insertion
        ("the cat sit on mat", 2),  # substitution + deletion
        ("mat the on sat cat the", 4),  # same words, wrong order
        ("", 6),  # everything deleted
    ],
)
def test_counts_edits_over_reference_words(hypothesis: str, errors: int) -> None:
    assert word_error_rate("the cat sat on the mat", hypothesis) == pytest.approx(errors / 6)


def test_insertions_can_push_it_above_one() -> None:
    assert word_error_rate("yes", "yes yes yes") == pytest.approx(2.0)


def test_empty_reference() -> None:
    assert word_error_rate("", "") == 0.0
    assert word_error_rate("...", "something") == 1.0
