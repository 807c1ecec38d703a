#!/usr/bin/env python3
"""Train the small Brown-corpus Mamba1 model and save it in the Hugging Face layout.

    PYTHONUNBUFFERED=1 python3 models/train/train.py --tokenizer models/brown-mamba/tokenizer.json \
        --out OUTDIR [--max-steps 1200] [--time-budget 400] [--seed 0]

Needs torch, tokenizers, transformers, safetensors and a CUDA device. Steps:
 1. tokenize train/valid/test (models/data/brown), documents joined by <|endoftext|> (id 0);
 2. train models/train/mamba_model.py's MambaLM (parallel scan) with AdamW on random windows of
    seq_len+1 tokens, linear warm-up then cosine decay to 10 %, stopping at --max-steps or when
    --time-budget seconds of training have passed; the validation loss is measured every
    --eval-every steps and the best state is kept;
 3. save config.json / model.safetensors (F16, lm_head tied and not stored) through
    transformers' MambaForCausalLM.save_pretrained, plus tokenizer.json;
 4. reload the saved folder with MambaForCausalLM (fp32) and compare its logits with MambaLM's
    on the same (fp16-rounded) weights; test perplexity with MambaLM fp32 and with
    MambaForCausalLM in fp32 and fp16;
 5. sample generations (greedy and top-k), and per layer the outlier ratios
    max|v| / q(|v|, 0.99999) of u (the scan input) and y (the gated scan output = out_proj input)
    from forward hooks on test text;
 6. results.json with all numbers, the loss curve and the samples.
Everything is seeded (--seed); CUDA kernels are asked to be deterministic.
"""

import argparse
import json
import math
import os
import sys
import time
import traceback

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from mamba_model import MambaLM, hf_config_kwargs  # noqa: E402

T_START = time.time()


def log(msg):
    print(f"[{time.time() - T_START:7.1f}s] {msg}", flush=True)


def read_docs(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [d for d in text.strip("\n").split("\n\n") if d]


def token_stream(tok, docs, eos=0):
    ids = []
    for enc in tok.encode_batch(docs, add_special_tokens=False):
        ids.append(eos)
        ids.extend(enc.ids)
    return torch.tensor(ids, dtype=torch.long)


def eval_windows(stream, seq_len):
    """Non-overlapping windows of seq_len+1 tokens (one shared token between neighbours):
    every token after the first is predicted exactly once."""
    n = (len(stream) - 1) // seq_len
    idx = torch.arange(n)[:, None] * seq_len + torch.arange(seq_len + 1)[None, :]
    return stream[idx]


@torch.no_grad()
def mean_nll(forward, windows, batch, device):
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        w = windows[i:i + batch].to(device)
        logits = forward(w[:, :-1]).float()
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1), reduction="sum")
        total += loss.item()
        count += w[:, 1:].numel()
    return total / count, count


def lr_at(step, max_steps, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


@torch.no_grad()
def generate(model, tok, prompt, n_new, device, top_k=0, temperature=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = tok.encode(prompt, add_special_tokens=False).ids
    for _ in range(n_new):
        logits = model(torch.tensor([[0] + ids], device=device))[0, -1].float().cpu()
        if top_k:
            v, i = torch.topk(logits / temperature, top_k)
            nxt = i[torch.multinomial(torch.softmax(v, -1), 1, generator=g)].item()
        else:
            nxt = int(torch.argmax(logits))
        if nxt == 0:
            break
        ids.append(nxt)
    return tok.decode(ids)


@torch.no_grad()
def outlier_table(model, windows, device, alpha=0.99999):
    acts = {}
    hooks = []
    for i, layer in enumerate(model.backbone.layers):
        acts[i] = {"u": [], "y": []}
        hooks.append(layer.mixer.u_probe.register_forward_hook(
            lambda m, inp, out, i=i: acts[i]["u"].append(out.detach().abs().float().flatten())))
        hooks.append(layer.mixer.out_proj.register_forward_pre_hook(
            lambda m, inp, i=i: acts[i]["y"].append(inp[0].detach().abs().float().flatten())))
    for j in range(0, len(windows), 16):
        model(windows[j:j + 16, :-1].to(device))
    for h in hooks:
        h.remove()
    rows = []
    for i in sorted(acts):
        row = {"layer": i}
        for k in ("u", "y"):
            v = torch.cat(acts[i][k])
            n = v.numel()
            kth = max(1, int(round(n * (1 - alpha))))
            top = torch.topk(v, kth).values
            row[k] = {"max": top[0].item(), "q": top[-1].item(), "ratio": (top[0] / top[-1]).item(),
                      "n": n, "mean_abs": v.mean().item()}
        rows.append(row)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=os.path.join(HERE, "..", "data", "brown"))
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--d-model", type=int, default=384)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--max-steps", type=int, default=3000)
    ap.add_argument("--time-budget", type=float, default=420.0, help="seconds of training at most")
    ap.add_argument("--fit-steps", action="store_true",
                    help="after 20 steps, lower --max-steps to what fits in --time-budget (the value is "
                         "printed; pass it as --max-steps to repeat the run)")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--time-hf-step", action="store_true",
                    help="also time one training step of transformers' MambaForCausalLM")
    a = ap.parse_args()

    from tokenizers import Tokenizer
    import transformers
    from transformers import MambaConfig, MambaForCausalLM

    torch.manual_seed(a.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = a.device
    cuda = device.startswith("cuda")
    dev_name = torch.cuda.get_device_name(0) if cuda else device
    log(f"torch {torch.__version__}, transformers {transformers.__version__}, device {dev_name}")
    try:
        from transformers.models.mamba import modeling_mamba
        log(f"transformers Mamba fast path available: {getattr(modeling_mamba, 'is_fast_path_available', '?')}")
    except Exception as e:  # noqa: BLE001
        log(f"transformers Mamba module: {e}")

    tok = Tokenizer.from_file(a.tokenizer)
    V = tok.get_vocab_size()
    splits = {s: token_stream(tok, read_docs(os.path.join(a.data, f"{s}.txt"))) for s in ("train", "valid", "test")}
    test_words = sum(len(d.split()) for d in read_docs(os.path.join(a.data, "test.txt")))
    test_bytes = sum(len(d.encode()) for d in read_docs(os.path.join(a.data, "test.txt")))
    log("tokens: " + ", ".join(f"{k} {len(v)}" for k, v in splits.items()) + f"; vocab {V}")

    cfg = {"vocab_size": V, "hidden_size": a.d_model, "intermediate_size": 2 * a.d_model, "state_size": 16,
           "conv_kernel": 4, "time_step_rank": math.ceil(a.d_model / 16), "num_hidden_layers": a.layers,
           "layer_norm_epsilon": 1e-5}
    model = MambaLM(cfg)
    model.init_weights(torch.Generator().manual_seed(a.seed))
    model.to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {cfg}, {n_params} parameters")

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and not name.endswith("A_log") else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.95), eps=1e-8)

    train = splits["train"]
    valid_w = eval_windows(splits["valid"], a.seq_len)
    test_w = eval_windows(splits["test"], a.seq_len)
    g = torch.Generator().manual_seed(a.seed + 1)
    n_win = (len(train) - 1) // a.seq_len
    order = []

    def next_batch():
        nonlocal order
        if len(order) < a.batch:  # a new epoch: random phase, shuffled windows
            off = int(torch.randint(0, a.seq_len, (1,), generator=g))
            m = (len(train) - 1 - off) // a.seq_len
            order = (off + torch.randperm(m, generator=g) * a.seq_len).tolist()
        starts, order = order[:a.batch], order[a.batch:]
        idx = torch.tensor(starts)[:, None] + torch.arange(a.seq_len + 1)[None, :]
        return train[idx].to(device, non_blocking=True)

    curve = []
    best = (float("inf"), None, -1)
    t_train0 = time.time()
    step_times = []
    step = 0
    train_loss_acc, train_loss_n = 0.0, 0
    model.train()
    while step < a.max_steps:
        if time.time() - t_train0 > a.time_budget:
            log(f"time budget reached at step {step}")
            break
        ts = time.time()
        for pg in opt.param_groups:
            pg["lr"] = lr_at(step, a.max_steps, a.lr, a.warmup)
        w = next_batch()
        logits = model(w[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, V).float(), w[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lv = loss.item()
        step_times.append(time.time() - ts)
        train_loss_acc += lv
        train_loss_n += 1
        step += 1
        if a.fit_steps and step == 20:
            per_step = sorted(step_times[1:])[len(step_times[1:]) // 2] * 1.03  # + validation passes
            fit = step + int((0.97 * a.time_budget - (time.time() - t_train0)) / per_step)
            fit = max(a.warmup + 10, fit // 10 * 10)
            if fit < a.max_steps:
                a.max_steps = fit
            log(f"--fit-steps: {per_step * 1000:.0f} ms/step -> max_steps {a.max_steps}")
        if not math.isfinite(lv):
            log(f"non-finite loss at step {step}; stopping")
            break
        if step % 10 == 0 or step <= 3:
            log(f"step {step} loss {lv:.4f} lr {opt.param_groups[0]['lr']:.2e} gnorm {gn:.2f} "
                f"step {step_times[-1] * 1000:.0f} ms ({a.batch * a.seq_len / step_times[-1]:.0f} tok/s), "
                f"mem {torch.cuda.max_memory_allocated() / 2**30 if cuda else 0:.1f} GiB")
        if step % a.eval_every == 0 or step == a.max_steps:
            model.eval()
            vl, _ = mean_nll(model, valid_w, 32, device)
            model.train()
            curve.append({"step": step, "train_loss": train_loss_acc / train_loss_n, "valid_loss": vl,
                          "time_s": time.time() - t_train0})
            train_loss_acc, train_loss_n = 0.0, 0
            log(f"eval step {step}: train {curve[-1]['train_loss']:.4f} valid {vl:.4f} (ppl {math.exp(vl):.1f})")
            if vl < best[0]:
                best = (vl, {k: v.detach().clone() for k, v in model.state_dict().items()}, step)
    train_time = time.time() - t_train0
    if train_loss_n:  # the last partial interval
        model.eval()
        vl, _ = mean_nll(model, valid_w, 32, device)
        curve.append({"step": step, "train_loss": train_loss_acc / train_loss_n, "valid_loss": vl, "time_s": train_time})
        log(f"final step {step}: valid {vl:.4f}")
        if vl < best[0]:
            best = (vl, {k: v.detach().clone() for k, v in model.state_dict().items()}, step)
    med = sorted(step_times)[len(step_times) // 2] if step_times else float("nan")
    log(f"trained {step} steps in {train_time:.1f} s, median step {med * 1000:.0f} ms; best valid {best[0]:.4f} at step {best[2]}")
    model.load_state_dict(best[1])
    model.eval()

    fp32_trained_test, _ = mean_nll(model, test_w, 32, device)

    # --- save through transformers (F16) ---
    hf_cfg = MambaConfig(**hf_config_kwargs(cfg))
    hf = MambaForCausalLM(hf_cfg)
    sd = {k: v.float().cpu() for k, v in model.state_dict().items()}
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    log(f"state_dict -> MambaForCausalLM: missing {missing}, unexpected {unexpected}")
    assert not unexpected and all(k == "lm_head.weight" for k in missing), "parameter names differ"
    os.makedirs(a.out, exist_ok=True)
    hf.to(torch.float16).save_pretrained(a.out)  # safetensors
    with open(a.tokenizer, "rb") as fi, open(os.path.join(a.out, "tokenizer.json"), "wb") as fo:
        fo.write(fi.read())
    for f in sorted(os.listdir(a.out)):
        log(f"  {f}: {os.path.getsize(os.path.join(a.out, f))} bytes")
    del hf

    # MambaLM with the shipped (fp16-rounded) weights from here on.
    model.load_state_dict({k: v.half().float() for k, v in model.state_dict().items()})
    res = {"config": cfg, "hf_config": hf_cfg.to_dict(), "params": n_params, "args": vars(a),
           "steps": step, "train_time_s": train_time, "median_step_ms": med * 1000,
           "tokens_per_step": a.batch * a.seq_len, "best_step": best[2], "best_valid_loss": best[0],
           "curve": curve, "device": dev_name, "torch": torch.__version__,
           "transformers": transformers.__version__, "test_tokens": len(splits["test"]),
           "test_words": test_words, "test_bytes": test_bytes, "train_tokens": len(train),
           "test_nll_trained_fp32_weights": fp32_trained_test}

    def load_hf(dtype):
        # The dtype is set explicitly: from_pretrained's default differs between versions.
        hf = MambaForCausalLM.from_pretrained(a.out).to(device=device, dtype=dtype)
        dts = sorted({str(p.dtype) for p in hf.parameters()})
        log(f"MambaForCausalLM.from_pretrained({a.out}) as {dts}")
        return hf

    def save_results():
        with open(os.path.join(a.out, "results.json"), "w") as f:
            json.dump(res, f, indent=1, default=str)

    def stage(name, fn):
        """Runs one evaluation stage; a failure is logged and the later stages still run."""
        try:
            fn()
        except Exception:  # noqa: BLE001
            log(f"stage '{name}' failed:\n{traceback.format_exc()}")
            res.setdefault("failed_stages", []).append(name)
        save_results()

    def ppl_ours():
        nll, cnt = mean_nll(model, test_w, 32, device)
        res["test_nll_mambalm_fp32"] = nll
        res["test_predicted_tokens"] = cnt
        log(f"test ({cnt} predicted tokens, windows of {a.seq_len}): MambaLM fp32 ppl {math.exp(nll):.2f} "
            f"(before fp16 rounding {math.exp(fp32_trained_test):.2f}); "
            f"bits/byte {nll * cnt / math.log(2) / test_bytes:.3f}")

    def samples():
        out = []
        for prompt in ["The jury said", "In the morning, she", "The United States"]:
            out.append({"prompt": prompt, "greedy": generate(model, tok, prompt, 60, device)})
            out.append({"prompt": prompt, "top_k": 40, "temperature": 0.8,
                        "text": generate(model, tok, prompt, 60, device, top_k=40, temperature=0.8, seed=a.seed)})
            for s in out[-2:]:
                log(f"sample: {json.dumps(s)}")
        res["samples"] = out

    def outliers():
        rows = outlier_table(model, test_w[:32], device)
        res["outliers"] = rows
        log("layer | max|u| | q99.999|u| | ratio u | max|y| | q99.999|y| | ratio y")
        for r in rows:
            log(f"{r['layer']} | {r['u']['max']:.3f} | {r['u']['q']:.3f} | {r['u']['ratio']:.2f} | "
                f"{r['y']['max']:.3f} | {r['y']['q']:.3f} | {r['y']['ratio']:.2f}")

    def hf_fp32():
        hf32 = load_hf(torch.float32).eval()
        with torch.no_grad():
            w = test_w[:4, :257].to(device)
            ours = model(w)
            t0 = time.time()
            theirs = hf32(w, use_cache=False).logits
            if cuda:
                torch.cuda.synchronize()
            t_hf = time.time() - t0
        diff = (ours - theirs).abs().max().item()
        res["hf_logits_max_abs_diff"] = diff
        log(f"MambaForCausalLM (reloaded, fp32) vs MambaLM logits on 4x257 test tokens: max abs diff {diff:.3e} "
            f"(logit absmax {theirs.abs().max().item():.2f}; HF forward {t_hf:.2f} s)")
        nll, _ = mean_nll(lambda x: hf32(x, use_cache=False).logits, test_w, 32, device)
        res["test_nll_hf_fp32"] = nll
        log(f"test: MambaForCausalLM fp32 ppl {math.exp(nll):.3f} (nll {nll:.6f})")

    def hf_fp16():
        hf16 = load_hf(torch.float16).eval()
        with torch.no_grad():
            w = test_w[:4, :257].to(device)
            l16 = hf16(w, use_cache=False).logits
            d16 = (l16.float() - model(w)).abs().max().item()
        res["hf_fp16_logits_max_abs_diff"] = d16
        log(f"MambaForCausalLM fp16 (logits {l16.dtype}) vs MambaLM fp32: max abs logit diff {d16:.3e}")
        nll, _ = mean_nll(lambda x: hf16(x, use_cache=False).logits, test_w, 32, device)
        res["test_nll_hf_fp16"] = nll
        log(f"test: MambaForCausalLM fp16 ppl {math.exp(nll):.3f} (nll {nll:.6f})")

    def hf_train_step():
        hf = load_hf(torch.float32).train()
        optim = torch.optim.AdamW(hf.parameters(), lr=1e-4)
        wb = next_batch()[:8]
        for _ in range(2):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.time()
            out = hf(wb[:, :-1], labels=wb[:, :-1], use_cache=False)
            out.loss.backward()
            optim.step()
            optim.zero_grad()
            if cuda:
                torch.cuda.synchronize()
            res["hf_train_step_s_batch8"] = time.time() - t0
            log(f"MambaForCausalLM training step (batch 8 x {a.seq_len}, fp32): {time.time() - t0:.2f} s")

    stage("ppl_ours", ppl_ours)
    stage("samples", samples)
    stage("outliers", outliers)
    stage("hf_fp32", hf_fp32)
    stage("hf_fp16", hf_fp16)
    if a.time_hf_step:
        stage("hf_train_step", hf_train_step)
    log("done")
    return 1 if res.get("failed_stages") else 0



if __name__ == "__main__":
    sys.exit(main())
