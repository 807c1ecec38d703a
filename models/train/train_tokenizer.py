#!/usr/bin/env python3
"""Train the byte-level BPE tokenizer of the Brown Mamba model with Hugging Face `tokenizers`.

GPT-NeoX style tokenizer.json: NFC normalizer, ByteLevel pre-tokenizer (no prefix space, GPT-2
regex), BPE model over the 256 byte symbols, ByteLevel decoder and post-processor, and the
special token <|endoftext|> with id 0 (the document separator). Trained on train.txt only.

    python3 models/train/train_tokenizer.py --data models/data/brown --vocab 4096 --out tokenizer.json \
        [--dump-ids token_ids.json]

--dump-ids writes the reference ids for the parity check of quamba's C++ tokenizer:
{"test_docs": [{"text", "ids"}], "strings": [{"text", "ids"}]} where test_docs are the documents
of test.txt (each a block of lines, newlines included) and strings the generated strings of
tests/python/tokenizer_parity.py (seed 0), all encoded with add_special_tokens=False.
"""

import argparse
import hashlib
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def read_docs(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [d for d in text.strip("\n").split("\n\n") if d]


def train(train_txt, vocab_size):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train([train_txt], trainer)
    return tok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(HERE, "..", "data", "brown"))
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dump-ids", default=None)
    a = ap.parse_args()

    t0 = time.time()
    tok = train(os.path.join(a.data, "train.txt"), a.vocab)
    tok.save(a.out)
    with open(a.out, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    assert tok.token_to_id("<|endoftext|>") == 0
    print(f"tokenizer: vocab {tok.get_vocab_size()}, trained in {time.time() - t0:.1f} s, "
          f"{a.out} sha256 {digest}")

    if a.dump_ids:
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(a.out)
        sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "python"))
        from tokenizer_parity import generate_strings
        docs = read_docs(os.path.join(a.data, "test.txt"))
        strings = generate_strings(3000, 0, ["<|endoftext|>"])
        out = {"test_docs": [{"text": d, "ids": tok.encode(d, add_special_tokens=False).ids} for d in docs],
               "strings": [{"text": s, "ids": tok.encode(s, add_special_tokens=False).ids} for s in strings]}
        with open(a.dump_ids, "w", encoding="utf-8") as f:
            json.dump(out, f, ensure_ascii=True)
        n = sum(len(d["ids"]) for d in out["test_docs"])
        words = sum(len(d.split()) for d in docs)
        print(f"dumped ids: {len(docs)} test documents ({n} tokens, {n / words:.3f} tokens/word), "
              f"{len(strings)} parity strings -> {a.dump_ids}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
