"""The generated blocks of BENCHMARKS.md, shared by bench/layer_report.py and
bench/scale_report.py: each script owns the text between its two markers and
adds a hand-written reading from a notes file of its own."""

import os

HERE = os.path.dirname(os.path.abspath(__file__))


def notes(name):
    """The hand-written notes bench/<name>, stripped, or None."""
    path = os.path.join(HERE, name)
    if not os.path.exists(path):
        return None
    return open(path, encoding="utf-8").read().rstrip()


def write_block(out, begin, end, block, after=None):
    """Puts `block` (which starts with `begin` and ends with `end`) into the
    file `out`: in place of the old block, else right after the marker
    `after` if the file has it, else after the file's first paragraph."""
    try:
        text = open(out, encoding="utf-8").read()
    except FileNotFoundError:
        text = "# Benchmarks\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    elif after and after in text:
        at = text.index(after) + len(after)
        text = text[:at] + "\n\n" + block + text[at:]
    else:
        head, _, rest = text.partition("\n\n")
        text = head + "\n\n" + block + "\n\n" + rest
    with open(out, "w", encoding="utf-8") as f:
        f.write(text)
