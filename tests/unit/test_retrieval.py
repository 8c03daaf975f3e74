"""Retrieval heads without a model: the paper's answer span, its ROUGE filter and stop rule, the
needle's placement and the depth it really got, on hand-made sequences."""

from __future__ import annotations

import numpy as np
import pytest

from inspector.analysis import retrieval as rt
from inspector.corpus import retrieval as engine
from inspector.errors import InputError

# ------------------------------------------------------------------------ the answer's span


def test_answer_span_is_the_first_window_holding_over_90_percent_of_the_answer_ids():
    answer = list(range(100, 120))  # 20 distinct ids
    prompt = [1, 2, 3, 4, *answer, 5, 6]
    # the window one token earlier still holds 19 of the 20 ids (95% > 90%): the paper's
    # find_needle_idx returns that one, shifted by one, and so does answer_span
    assert rt.answer_span(prompt, answer) == (3, 23)
    # with 10 distinct ids a window one off holds 9 (90%, not more): only the exact one counts
    short = list(range(100, 110))
    assert rt.answer_span([1, 2, 3, 4, *short, 5], short) == (4, 14)


def test_answer_span_uses_distinct_ids_and_returns_the_first_match():
    # repeated ids count once: [7, 8, 7] is found where a window holds {7, 8}
    assert rt.answer_span([1, 2, 8, 7, 9, 9], [7, 8, 7]) == (1, 4)
    # an earlier copy (say, in the haystack) is found first
    assert rt.answer_span([5, 6, 0, 5, 6, 0], [5, 6]) == (0, 2)


def test_answer_span_without_a_match():
    assert rt.answer_span([1, 2, 3, 4, 5], [1, 2, 3, 9]) is None  # 3 of 4 ids
    assert rt.answer_span([1, 2], [1, 2, 3]) is None  # longer than the prompt
    with pytest.raises(InputError, match="no tokens"):
        rt.answer_span([1, 2, 3], [])


def test_scores_divide_by_the_answer_span_not_the_needle():
    # needle = positions 2..9, the answer = 6..9 (ids 60 61 62 63); a head copying the whole
    # answer scores 1 on the answer's span, 0.5 if the needle's span were the divisor.
    prompt = [1, 2, 20, 21, 22, 23, 60, 61, 62, 63, 5]
    generated = [60, 61, 62, 63]
    pos = np.array([[[6, 2]], [[7, 3]], [[8, 4]], [[9, 5]]])  # head 1 reads the restated part
    on_answer = rt.retrieval_step_scores(pos, generated, prompt, (6, 10))
    np.testing.assert_allclose(on_answer, [[1.0, 0.0]])
    on_needle = rt.retrieval_step_scores(pos, generated, prompt, (2, 10))
    np.testing.assert_allclose(on_needle, [[0.5, 0.0]])


# ------------------------------------------------------------------------ the ROUGE filter

ANSWER = engine.KNOWN_ANSWERS[engine.DEFAULT_NEEDLE]


def test_rouge_filter_is_rouge_score_recall_of_the_answer_with_stemming():
    # 12 reference words (eat a sandwich and sit in dolores park on a sunny day: "a" twice)
    assert rt.rouge1_recall_stemmed(ANSWER, ANSWER) == 1.0
    # stems: eating -> eat, sandwiches -> sandwich, sitting -> sit; "a" x2, "on", "day" missing
    got = rt.rouge1_recall_stemmed(ANSWER, "Eating sandwiches and sitting in Dolores Park, sunny!")
    assert got == pytest.approx(8 / 12)
    # the words are lowercased and split on anything but ASCII letters and digits
    assert rt.rouge1_recall_stemmed("Dolores Park", "dolores-PARK") == 1.0
    assert rt.rouge1_recall_stemmed("東京 タワー", "東京 タワー") == 0.0


def test_a_restated_question_passes_the_needle_rule_but_not_the_papers():
    response = (
        "The best thing to do in San Francisco is a question that many visitors ask, and a park "
        "is one answer."
    )
    # the old rule, word recall of the whole needle (21 words): the restated question gives
    # the best thing to do in san francisco is (9), then a a and park (4): 13 of 21
    old = rt.rouge1_recall(engine.DEFAULT_NEEDLE, response)
    assert old == pytest.approx(13 / 21)
    # the paper's rule, recall of the answer only (12 words): a a and in park: 5 of 12
    new = rt.rouge1_recall_stemmed(ANSWER, response)
    assert new == pytest.approx(5 / 12)
    trial = dict(length=10, depth=0.5, depth_used=0.5, n_tokens=10, needle_start=1, needle_end=5)
    trial.update(answer_start=2, answer_end=5, response=response, scores=np.zeros((1, 1)))
    assert rt.Trial(recall=old, **trial).success
    assert not rt.Trial(recall=new, **trial).success
    assert not rt.Trial(recall=0.5, **trial).success  # "more than 0.5", as the paper's > 50


# ------------------------------------------------------------------------ the stop rule


def test_wu_stop_rule_stops_after_a_newline_and_not_at_eos():
    rule = rt.StopRule.for_protocol("wu", needle_tokens=20)
    assert rule == rt.StopRule(50, newline=True, eos=False)
    texts = ["Eat", "<|im_end|>", " a", " sandwich", "\n", "More"]
    eos = [False, True, False, False, False, False]
    assert rule.kept(texts, eos) == 5  # the newline token is kept, as the paper's loop does
    assert rule.kept(["Eat", ".\n\n", "x"], [False] * 3) == 2  # merged newline tokens too
    assert rule.kept(["x"] * 80, [False] * 80) == 50  # no newline: 50 tokens
    assert rule.kept(["x"] * 7, [False] * 7) == 7
    assert (
        rt.StopRule.for_protocol("wu", needle_tokens=20, max_new_tokens=3).kept(
            ["x"] * 7, [False] * 7
        )
        == 3
    )


def test_needle_stop_rule_stops_at_eos_after_the_needle_length_plus_10():
    rule = rt.StopRule.for_protocol("needle", needle_tokens=5)
    assert rule == rt.StopRule(15, newline=False, eos=True)
    texts = ["Eat", "\n", " a", "<|im_end|>", "x"]
    assert rule.kept(texts, [False, False, False, True, False]) == 4
    assert rule.kept(["x"] * 40, [False] * 40) == 15
    with pytest.raises(InputError, match="protocol"):
        rt.StopRule.for_protocol("kamradt", needle_tokens=5)
    with pytest.raises(InputError, match="positive"):
        rt.StopRule(0, newline=True, eos=False)


# ------------------------------------------------------------------------ the answer itself


def test_the_answer_is_known_for_documented_needles_and_required_otherwise():
    assert engine.resolve_answer(engine.DEFAULT_NEEDLE, None, "wu") == ANSWER
    mr_green = next(n for n in engine.KNOWN_ANSWERS if n.startswith("Mr Green"))
    assert engine.resolve_answer(mr_green, None, "wu").startswith("Because")  # case aside
    assert engine.resolve_answer("Blue keys open red doors.", "red doors", "wu") == "red doors"
    with pytest.raises(InputError, match="answer="):
        engine.resolve_answer("Blue keys open red doors.", None, "wu")
    with pytest.raises(InputError, match="not a part of the needle"):
        engine.resolve_answer("Blue keys open red doors.", "green doors", "wu")
    assert engine.resolve_answer("Blue keys open red doors.", None, "needle") is None
    with pytest.raises(InputError, match="protocol='wu' only"):
        engine.resolve_answer("Blue keys open red doors.", "red doors", "needle")


# ------------------------------------------------------------------------ depth placement


def test_a_haystack_without_sentence_ends_places_the_needle_at_a_word_start():
    hay = " ".join(f"w{i}" for i in range(200))  # no sentence end, no line
    for depth in (0.0, 0.25, 0.5, 0.75, 1.0):
        text, at = rt.insert_needle(hay, "NEEDLE.", depth)
        assert text[at:].startswith("NEEDLE.")
        if 0 < depth < 1:
            assert text[at - 1] == " " and text[at + len("NEEDLE.")] == " "
            # a word start within one word of the requested character
            assert abs(at / len(hay) - depth) < 4 / len(hay)
    assert rt.insert_needle(hay, "N", 0.0)[1] == 0
    text, at = rt.insert_needle(hay, "N", 1.0)
    assert at == len(hay) + 1 and text.endswith(" N")


def test_line_ends_come_before_word_starts_and_keep_the_newline():
    hay = "\n".join(" ".join(f"l{i}w{j}" for j in range(6)) for i in range(40))
    cut = rt.needle_offset(hay, 0.5)
    assert hay[cut - 1] == "\n"
    assert abs(cut - len(hay) / 2) <= len(hay.splitlines()[0]) + 1
    text, at = rt.insert_needle(hay, "NEEDLE.", 0.5)
    assert text[at - 1] == "\n" and text[at + len("NEEDLE.")] == "\n"


def test_the_nearest_sentence_end_wins_even_after_the_requested_point():
    hay = " ".join(["aaaa"] * 20) + ". Bb. " + "cc " * 10
    end = hay.index(". ") + 2
    depth = (end - 3) / len(hay)  # 3 characters before the first sentence's end
    got = rt.needle_offset(hay, depth)
    assert got == end and got > round(len(hay) * depth)
    # CJK sentence ends need no space after them
    cjk = "今天下雨。" * 40
    at = rt.needle_offset(cjk, 0.5)
    assert cjk[at - 1] == "。" and abs(at - 100) <= 3


def test_a_far_sentence_end_yields_to_a_near_word_start():
    words = " ".join(f"w{i}" for i in range(300))
    hay = words + ". " + "tail words here"  # the only sentence end is at 95%
    at = rt.needle_offset(hay, 0.5)
    assert abs(at / len(hay) - 0.5) < 0.01 and hay[at - 1] == " "


def test_text_without_any_space_is_cut_at_the_character():
    assert rt.needle_offset("abcdefghij", 0.5) == 5
    with pytest.raises(InputError):
        rt.needle_offset("abc", 1.5)


def test_depth_used_counts_the_haystack_tokens_before_the_needle():
    # template tokens (no characters: -1), 3 haystack tokens, the needle (2), 1 haystack token
    offs = np.array([[-1, -1], [0, 3], [3, 6], [6, 9], [9, 14], [14, 20], [20, 24], [24, 30]])
    # the context is characters 0..24, the needle 9..20; the question follows at 24
    assert rt.depth_used(offs, (0, 24), (9, 20)) == pytest.approx(3 / 4)
    assert rt.depth_used(offs, (0, 24), (0, 9)) == pytest.approx(0.0)
    # a token straddling the needle's start with its middle in the needle counts as needle
    assert rt.depth_used(np.array([[0, 4], [4, 12], [12, 20]]), (0, 20), (5, 20)) == 1.0
