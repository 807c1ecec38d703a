#!/usr/bin/env python3
"""Parity of quamba's byte-level BPE tokenizer with the Hugging Face `tokenizers` library.

Encodes a few thousand generated strings (ASCII prose, contractions, accented Latin, CJK and
kana, Hangul, emoji with ZWJ sequences and modifiers, whitespace runs including Unicode spaces,
numbers in several scripts, mixed scripts, the tokenizer's own added tokens embedded in text) with
both `tokenizers.Tokenizer.from_file(TOKENIZER_JSON).encode(s, add_special_tokens=False)` and the
quamba-tokenize example program, and compares the ids; then decodes the reference ids with both
and compares the texts. Strings are NFC-normalized first (quamba assumes NFC input).

Run (after building the example, which needs libpcre2-dev):

    cmake --build build --target quamba-tokenize
    python3 tests/python/tokenizer_parity.py path/to/tokenizer.json build/examples/quamba-tokenize \
        [--count 3000] [--seed 0] [--show 10]

e.g. with the tokenizer.json of state-spaces/mamba-130m-hf (the GPT-NeoX tokenizer). Exit status:
0 when every string matches (or when the `tokenizers` module is not installed: the script prints
"tokenizers not installed: skipped"), 1 on a mismatch (the first --show ones are printed), 2 on a
usage or helper-program error.
"""

import argparse
import json
import random
import subprocess
import sys
import unicodedata

ASCII_WORDS = ("the quick brown fox jumps over a lazy dog Hello World Mamba state space model "
               "token tokenizer quantization int8 GPU kernel I you we they it's don't can't "
               "we're they've I'm she'll he'd O'Neil rock'n'roll e-mail http://example.com/a?b=c "
               "foo_bar fooBar FOO x=1 y+=2 a->b {}[]() #include <vector> $100 50% C++ ...").split()
ACCENTED = ("café crème brûlée naïve façade Ångström Zürich São Paulo señor niño coöperate "
            "Œuvre Łódź Dvořák Ελληνικά Русский язык Україна ﬁnance ǅemal").split()
CJK = ["日本語", "中文", "漢字", "東京", "こんにちは", "カタカナ", "テスト", "ひらがな", "한국어",
       "안녕하세요", "你好世界", "機械学習", "ｶﾀｶﾅ", "〜", "、", "。", "「引用」"]
EMOJI = ["😀", "👍", "👍🏽", "👨\u200d👩\u200d👧", "❤️", "🇯🇵", "🚀", "🤖", "✨", "🎉", "☃", "©", "™",
         "🏳️\u200d🌈", "1️⃣"]
SPACES = [" ", "  ", "   ", "    ", " " * 7, " " * 24, " " * 31, "\t", "\t\t", "\n", "\n\n", "\r\n",
          " \n", "\n ", "\u00a0", "\u3000", "\u2003", "\u0085", "\u2028", "\u200b", "\ufeff", "\x0b",
          "\x0c"]
NUMBERS = ["0", "7", "42", "123", "2024", "3.14159", "-17", "1e10", "1,000,000", "0x1F", "٣٤٥",
           "१२३", "１２３", "½", "²", "Ⅻ", "10:30", "v1.2.3"]


def random_code_point(rng):
    """A code point from long-assigned blocks (so that Unicode versions agree), no surrogates."""
    blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x5FF),
              (0x600, 0x6FF), (0x900, 0x97F), (0xE00, 0xE5B), (0x3040, 0x30FF), (0x4E00, 0x9FA5),
              (0xAC00, 0xD7A3), (0xFF01, 0xFF5E), (0x1F600, 0x1F64F), (0x2000, 0x206F),
              (0x1, 0x1F)]
    lo, hi = rng.choice(blocks)
    return chr(rng.randint(lo, hi))


def generate_strings(count, seed, added_tokens):
    rng = random.Random(seed)
    kinds = ["ascii", "accented", "cjk", "emoji", "spaces", "numbers", "mixed", "random", "added"]
    out = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        n = rng.randint(1, 12)
        if kind == "ascii":
            parts = [rng.choice(ASCII_WORDS) + rng.choice(["", "", ",", ".", "!", "?", "'s", ":"])
                     for _ in range(n)]
            s = " ".join(parts)
        elif kind == "accented":
            s = " ".join(rng.choice(ACCENTED + ASCII_WORDS) for _ in range(n))
        elif kind == "cjk":
            s = rng.choice(["", " "]).join(rng.choice(CJK + ACCENTED[:3]) for _ in range(n))
        elif kind == "emoji":
            s = "".join(rng.choice(EMOJI + [" ", "a", "!", "ok "]) for _ in range(n))
        elif kind == "spaces":
            s = "".join(rng.choice(SPACES + ASCII_WORDS[:8]) for _ in range(n))
        elif kind == "numbers":
            s = "".join(rng.choice(NUMBERS) + rng.choice(["", " ", "  ", ".", ",", "abc"]) for _ in range(n))
        elif kind == "mixed":
            pools = [ASCII_WORDS, ACCENTED, CJK, EMOJI, SPACES, NUMBERS]
            s = "".join(rng.choice(rng.choice(pools)) + rng.choice(["", " "]) for _ in range(2 * n))
        elif kind == "random":
            s = "".join(random_code_point(rng) for _ in range(rng.randint(1, 40)))
        else:  # added tokens in text
            pool = ASCII_WORDS + SPACES + (added_tokens or ["<|endoftext|>"])
            s = "".join(rng.choice(pool) for _ in range(n))
        out.append(unicodedata.normalize("NFC", s))
    return out


def run_helper(helper, tokenizer_json, args, lines):
    try:
        p = subprocess.run([helper, tokenizer_json] + args, input="".join(l + "\n" for l in lines),
                           capture_output=True, text=True, encoding="utf-8", check=False)
    except OSError as e:
        print(f"error: cannot run {helper}: {e}", file=sys.stderr)
        sys.exit(2)
    if p.returncode != 0:
        print(f"error: {helper} failed: {p.stderr.strip()}", file=sys.stderr)
        sys.exit(2)
    out = p.stdout.split("\n")
    if out and out[-1] == "":
        out.pop()
    if len(out) != len(lines):
        print(f"error: {helper} printed {len(out)} lines for {len(lines)} inputs", file=sys.stderr)
        sys.exit(2)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tokenizer_json")
    ap.add_argument("helper", help="path of the quamba-tokenize program")
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--show", type=int, default=10, help="mismatches to print")
    a = ap.parse_args()
    try:
        from tokenizers import Tokenizer
    except ImportError:
        print("tokenizers not installed: skipped")
        return 0

    ref = Tokenizer.from_file(a.tokenizer_json)
    with open(a.tokenizer_json, encoding="utf-8") as f:
        added = [t["content"] for t in json.load(f).get("added_tokens") or []]
    texts = generate_strings(a.count, a.seed, added)

    ours = run_helper(a.helper, a.tokenizer_json, ["--json"], [json.dumps(s) for s in texts])
    want = [ref.encode(s, add_special_tokens=False).ids for s in texts]
    bad = 0
    for s, line, w in zip(texts, ours, want):
        got = [int(x) for x in line.split()]
        if got != w:
            bad += 1
            if bad <= a.show:
                print(f"encode mismatch for {s!r}:\n  quamba: {got}\n  ref:    {w}\n"
                      f"  ref tokens: {[ref.id_to_token(i) for i in w]}")

    decoded = run_helper(a.helper, a.tokenizer_json, ["--decode"], [" ".join(map(str, w)) for w in want])
    bad_dec = 0
    for w, line in zip(want, decoded):
        got = json.loads(line)
        exp = ref.decode(w, skip_special_tokens=False)
        if got != exp:
            bad_dec += 1
            if bad_dec <= a.show:
                print(f"decode mismatch for ids {w}:\n  quamba: {got!r}\n  ref:    {exp!r}")

    print(f"{len(texts)} strings: {len(texts) - bad} encode identically, "
          f"{len(texts) - bad_dec} decode identically")
    return 1 if bad or bad_dec else 0


if __name__ == "__main__":
    sys.exit(main())
