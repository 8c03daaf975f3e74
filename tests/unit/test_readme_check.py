"""The README checker itself: shown outputs are found, compared by tokens, numbers within 1e-3."""

from __future__ import annotations

from readme_check import blocks, cli_examples, matches, printed_outputs, shown_outputs


def test_shown_outputs_are_the_comments_after_a_statement() -> None:
    source = 'x = 1\nx + 1\n# 2\nprint("a")\n# a\ny = 3  # a remark\n'
    shown = shown_outputs(source, 0)
    assert [(s.line, s.expected) for s in shown] == [(2, "2"), (4, "a")]


def test_matching_tolerates_float_noise_and_ellipses_only() -> None:
    assert matches("(6, 12, 14, 14) 0.156262", "(6, 12, 14, 14) 0.15626")
    assert not matches("0.156262", "0.1580")
    assert matches("layer head ... 0.5", "layer head a b c 0.5")
    assert not matches("layer head", "layer head extra")
    assert not matches("[CLS] the cat", "[CLS] the dog")


def test_cli_examples_need_a_shown_output() -> None:
    readme = "```bash\ninspector heads minilm 'a b'\n# minilm: 1 text(s)\ninspector x\n```\n"
    assert cli_examples(readme) == [("inspector heads minilm 'a b'", "minilm: 1 text(s)")]


def test_a_plain_block_after_a_python_block_is_what_it_prints() -> None:
    readme = "```python\nprint(1)\n```\n\n```\n1\n```\n\n```python\nx = 2\n```\n"
    assert blocks(readme) == ["print(1)\n", "x = 2\n"]
    assert printed_outputs(readme) == {0: "1"}
