#!/usr/bin/env python3
"""Conformance of quamba's checkpoint loader and fp32 reference model with Hugging Face
transformers' MambaForCausalLM.

For each case, transformers builds a MambaForCausalLM from its own MambaConfig (seeded; the
norms, D, A_log and biases are perturbed away from their initial values so every parameter
matters), saves it with save_pretrained (safetensors; F32, F16 or BF16; tied or untied lm_head;
one file or shards with an index), reloads the saved files in fp32 and computes the logits of a
random token sequence. quamba_hf_logits loads the same directory and computes the logits on the
host reference. Both see exactly the same (rounded) weights, so the only differences are fp32
summation orders: the test asserts max |diff| <= 2e-4 * max |logit| + 1e-5 and the same argmax
at >= 99% of positions.

usage: hf_conformance.py QUAMBA_HF_LOGITS WORK_DIR
Exit status: 0 pass, 1 mismatch, 2 usage or helper error, 77 torch/transformers not installed.
"""
import os
import shutil
import subprocess
import sys

try:
    import torch
    from transformers import MambaConfig, MambaForCausalLM
except ImportError:
    print("torch or transformers not installed: skipped")
    sys.exit(77)

CASES = [
    # name, d_model, layers, vocab, tied, dtype, max_shard_size
    ("tied_f32", 96, 2, 300, True, torch.float32, None),
    ("untied_f16", 64, 3, 257, False, torch.float16, None),
    ("tied_bf16_sharded", 96, 2, 300, True, torch.bfloat16, "60KB"),
    ("untied_f32_sharded_dstate8", 48, 2, 131, False, torch.float32, "40KB"),
]
SEQ_LEN = 45


def build(name, d, layers, vocab, tied, seed, d_state=16):
    torch.manual_seed(seed)
    cfg = MambaConfig(vocab_size=vocab, hidden_size=d, state_size=d_state, num_hidden_layers=layers, expand=2,
                      conv_kernel=4, use_bias=False, use_conv_bias=True, tie_word_embeddings=tied,
                      residual_in_fp32=True, layer_norm_epsilon=1e-5)
    m = MambaForCausalLM(cfg).eval()
    with torch.no_grad():
        for pname, p in m.named_parameters():
            if pname.endswith("norm.weight") or pname.endswith("norm_f.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif pname.endswith(".D"):
                p.copy_(1.0 + 0.5 * torch.randn_like(p))
            elif pname.endswith("A_log"):
                p.add_(0.2 * torch.randn_like(p))
            elif pname.endswith("conv1d.bias") or pname.endswith("dt_proj.bias"):
                p.add_(0.1 * torch.randn_like(p))
            elif pname.endswith("embeddings.weight"):
                p.copy_(0.5 * torch.randn_like(p))
    return m


def load_fp32(path):
    try:
        return MambaForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    except TypeError:  # transformers < 4.56 names the argument torch_dtype
        return MambaForCausalLM.from_pretrained(path, torch_dtype=torch.float32).eval()


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    helper, work = sys.argv[1], sys.argv[2]
    os.makedirs(work, exist_ok=True)
    failures = 0
    for i, (name, d, layers, vocab, tied, dtype, shard) in enumerate(CASES):
        d_state = 8 if "dstate8" in name else 16
        path = os.path.join(work, name)
        shutil.rmtree(path, ignore_errors=True)
        m = build(name, d, layers, vocab, tied, seed=100 + i, d_state=d_state)
        kw = {"safe_serialization": True}
        if shard:
            kw["max_shard_size"] = shard
        m.to(dtype).save_pretrained(path, **kw)
        sharded = os.path.exists(os.path.join(path, "model.safetensors.index.json"))
        if bool(shard) != sharded:
            print(f"{name}: expected {'a sharded' if shard else 'a single-file'} checkpoint", file=sys.stderr)
            return 2
        ref = load_fp32(path)
        g = torch.Generator().manual_seed(7 + i)
        ids = torch.randint(0, vocab, (1, SEQ_LEN), generator=g)
        with torch.no_grad():
            hf = ref(ids).logits[0].float()
        ids_file = os.path.join(path, "ids.txt")
        out_file = os.path.join(path, "quamba_logits.f32")
        with open(ids_file, "w") as f:
            f.write(" ".join(str(int(t)) for t in ids[0]))
        r = subprocess.run([helper, path, ids_file, out_file], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{name}: quamba_hf_logits failed: {r.stderr.strip()}", file=sys.stderr)
            return 2
        with open(out_file, "rb") as f:
            ours = torch.frombuffer(bytearray(f.read()), dtype=torch.float32)
        if ours.numel() != hf.numel():
            print(f"{name}: {ours.numel()} logits from quamba, {hf.numel()} from transformers", file=sys.stderr)
            return 1
        ours = ours.view_as(hf)
        diff = (ours - hf).abs().max().item()
        scale = hf.abs().max().item()
        agree = (ours.argmax(-1) == hf.argmax(-1)).float().mean().item()
        ok = diff <= 2e-4 * scale + 1e-5 and agree >= 0.99
        failures += not ok
        print(f"{name:28s} layers={layers} d_model={d} vocab={vocab} tied={tied} dtype={str(dtype)[6:]} "
              f"sharded={sharded}: max|diff|={diff:.3e} max|logit|={scale:.3f} argmax agree={agree:.3f} "
              f"{'ok' if ok else 'MISMATCH'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
