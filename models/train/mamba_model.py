"""A Mamba1 language model in plain PyTorch, with a parallel selective scan for training.

The parameter names and shapes are those of the Hugging Face checkpoints (transformers'
MambaForCausalLM), so a state_dict of this model loads into MambaForCausalLM unchanged and the
two compute the same function (SPEC.md §1):

  backbone.embeddings.weight                 (V, D)
  backbone.layers.{i}.norm.weight            (D)
  backbone.layers.{i}.mixer.in_proj.weight   (2E, D)      no bias
  backbone.layers.{i}.mixer.conv1d.weight    (E, 1, K)    depthwise, causal (left pad K-1)
  backbone.layers.{i}.mixer.conv1d.bias      (E)
  backbone.layers.{i}.mixer.x_proj.weight    (R+2N, E)    -> dt_low, B, C
  backbone.layers.{i}.mixer.dt_proj.weight   (E, R)
  backbone.layers.{i}.mixer.dt_proj.bias     (E)
  backbone.layers.{i}.mixer.A_log            (E, N)       A = -exp(A_log)
  backbone.layers.{i}.mixer.D                (E)
  backbone.layers.{i}.mixer.out_proj.weight  (D, E)       no bias
  backbone.norm_f.weight                     (D)
  lm_head.weight                             tied to the embedding

The scan h_t = exp(δ_t A) h_{t-1} + δ_t x_t B_t, y_t = h_t·C_t runs as a log-depth
(Hillis-Steele) scan over the time axis on (B, L, E, N) fp32 tensors, in a custom autograd
Function: the forward keeps only its small inputs, the backward recomputes the states and runs
the adjoint recurrence λ_t = g_t + a_{t+1} λ_{t+1} as a reversed scan. No CUDA extension is
needed. Every tensor of the scan is fp32 whatever the input dtype.

Two parameter-free probes (nn.Identity) expose the activations the Quamba recipe quantizes with
special care: `mixer.u_probe` sees u = SiLU(conv) (the scan input), and `mixer.out_proj`'s
input is the gated scan output y; register forward hooks on them.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _scan(a, b):
    """h_t = a_t h_{t-1} + b_t along dim 1 (h_{-1} = 0), log-depth; a and b are not modified.

    Each level writes fresh buffers with out= (one read of each operand, one write), since the
    memory traffic of the (B, L, E, N) tensors is what bounds this scan."""
    L = a.shape[1]
    k = 1
    while k < L:
        nb = torch.empty_like(b)
        nb[:, :k] = b[:, :k]
        torch.addcmul(b[:, k:], a[:, k:], b[:, :-k], out=nb[:, k:])
        if 2 * k < L:  # the products of a are not needed after the last level
            na = torch.empty_like(a)
            na[:, :k] = a[:, :k]
            torch.mul(a[:, k:], a[:, :-k], out=na[:, k:])
            a = na
        b = nb
        k *= 2
    return b


def _states(delta, A, Bm, x):
    """a = exp(δA) and the scanned states h, both (B, L, E, N) fp32."""
    a = torch.exp(delta.unsqueeze(-1) * A)
    b = (delta * x).unsqueeze(-1) * Bm.unsqueeze(2)
    return a, _scan(a, b)


class SelectiveScan(torch.autograd.Function):
    """y[b,t,e] = Σ_n h[b,t,e,n] C[b,t,n] with h the selective-scan state (no D skip, no gate).

    delta, x: (B, L, E); A: (E, N); Bm, Cm: (B, L, N). All fp32.
    """

    @staticmethod
    def forward(ctx, delta, A, Bm, Cm, x):
        with torch.no_grad():
            _, h = _states(delta, A, Bm, x)
            y = torch.einsum("blen,bln->ble", h, Cm)
        ctx.save_for_backward(delta, A, Bm, Cm, x)
        return y

    @staticmethod
    def backward(ctx, gy):
        delta, A, Bm, Cm, x = ctx.saved_tensors
        with torch.no_grad():
            a, h = _states(delta, A, Bm, x)
            grad_C = torch.einsum("ble,blen->bln", gy, h)
            g = gy.unsqueeze(-1) * Cm.unsqueeze(2)  # dLoss/dh_t directly through y_t
            # λ_t = g_t + a_{t+1} λ_{t+1}: the same scan on the time-reversed sequence.
            a_next = torch.zeros_like(a)
            a_next[:, :-1] = a[:, 1:]
            lam = _scan(a_next.flip(1), g.flip(1)).flip(1)
            h_prev = torch.zeros_like(h)
            h_prev[:, 1:] = h[:, :-1]
            del h, g, a_next
            grad_a = lam * h_prev * a  # dLoss/d(δA)
            del h_prev
            grad_delta = (grad_a * A).sum(-1)
            grad_A = torch.einsum("blen,ble->en", grad_a, delta)
            del grad_a
            lam_B = torch.einsum("blen,bln->ble", lam, Bm)  # Σ_n λ B
            grad_delta = grad_delta + lam_B * x
            grad_x = lam_B * delta
            grad_B = torch.einsum("blen,ble->bln", lam, delta * x)
        return grad_delta, grad_A, grad_B, grad_C, grad_x


def selective_scan_reference(delta, A, Bm, Cm, x):
    """Sequential loop, for tests."""
    Bsz, L, E = x.shape
    h = torch.zeros(Bsz, E, A.shape[1], dtype=x.dtype, device=x.device)
    ys = []
    for t in range(L):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * x[:, t])[..., None] * Bm[:, t, None, :]
        ys.append((h * Cm[:, t, None, :]).sum(-1))
    return torch.stack(ys, 1)


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


class Mixer(nn.Module):
    def __init__(self, d_model, d_inner, d_state, d_conv, dt_rank):
        super().__init__()
        self.E, self.N, self.R, self.K = d_inner, d_state, dt_rank, d_conv
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.zeros(d_inner, d_state))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        self.u_probe = nn.Identity()

    def forward(self, hs):  # (B, L, D)
        L = hs.shape[1]
        xz = self.in_proj(hs)
        x, z = xz.chunk(2, dim=-1)
        x = self.conv1d(x.transpose(1, 2))[..., :L].transpose(1, 2)
        u = self.u_probe(F.silu(x))
        dt, Bm, Cm = self.x_proj(u).split([self.R, self.N, self.N], dim=-1)
        delta = F.softplus(self.dt_proj(dt).float())  # torch's softplus is linear above 20
        A = -torch.exp(self.A_log.float())
        y = SelectiveScan.apply(delta, A, Bm.float(), Cm.float(), u.float())
        y = y + u.float() * self.D.float()
        y = (y * F.silu(z.float())).to(hs.dtype)
        return self.out_proj(y)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.norm = RMSNorm(cfg["hidden_size"], cfg["layer_norm_epsilon"])
        self.mixer = Mixer(cfg["hidden_size"], cfg["intermediate_size"], cfg["state_size"],
                           cfg["conv_kernel"], cfg["time_step_rank"])

    def forward(self, residual):  # residual kept in fp32
        return residual + self.mixer(self.norm(residual.to(self.norm.weight.dtype))).float()


class Backbone(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embeddings = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList([Block(cfg) for _ in range(cfg["num_hidden_layers"])])
        self.norm_f = RMSNorm(cfg["hidden_size"], cfg["layer_norm_epsilon"])

    def forward(self, ids):
        r = self.embeddings(ids).float()
        for layer in self.layers:
            r = layer(r)
        return self.norm_f(r.to(self.norm_f.weight.dtype))


class MambaLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = dict(cfg)
        self.backbone = Backbone(cfg)
        self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)
        self.lm_head.weight = self.backbone.embeddings.weight

    def forward(self, ids):
        return self.lm_head(self.backbone(ids))

    @torch.no_grad()
    def init_weights(self, generator, dt_min=1e-3, dt_max=0.1, dt_init_floor=1e-4):
        """The Mamba initialization (mamba_ssm's Mamba.__init__ and _init_weights), seeded."""
        cfg = self.cfg
        n_layer = cfg["num_hidden_layers"]

        def uniform_(t, bound):
            t.copy_((torch.rand(t.shape, generator=generator) * 2 - 1) * bound)

        self.backbone.embeddings.weight.copy_(torch.randn(self.backbone.embeddings.weight.shape, generator=generator) * 0.02)
        for layer in self.backbone.layers:
            m = layer.mixer
            layer.norm.weight.fill_(1.0)
            for lin in (m.in_proj, m.x_proj, m.out_proj):
                uniform_(lin.weight, 1.0 / math.sqrt(lin.weight.shape[1]))  # nn.Linear's default bound
            # GPT-2 style rescale of the residual-branch output projection.
            m.out_proj.weight.div_(math.sqrt(n_layer))
            uniform_(m.conv1d.weight, 1.0 / math.sqrt(m.K))  # fan_in = K for a depthwise conv
            uniform_(m.conv1d.bias, 1.0 / math.sqrt(m.K))
            uniform_(m.dt_proj.weight, m.R ** -0.5)
            dt = torch.exp(torch.rand(m.E, generator=generator) * (math.log(dt_max) - math.log(dt_min))
                           + math.log(dt_min)).clamp(min=dt_init_floor)
            m.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
            m.A_log.copy_(torch.log(torch.arange(1, m.N + 1, dtype=torch.float32)).repeat(m.E, 1))
            m.D.fill_(1.0)
        self.backbone.norm_f.weight.fill_(1.0)


def hf_config_kwargs(cfg):
    """Arguments for transformers.MambaConfig."""
    return dict(vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"],
                state_size=cfg["state_size"], num_hidden_layers=cfg["num_hidden_layers"],
                layer_norm_epsilon=cfg["layer_norm_epsilon"], expand=cfg["intermediate_size"] // cfg["hidden_size"],
                conv_kernel=cfg["conv_kernel"], use_bias=False, use_conv_bias=True, hidden_act="silu",
                time_step_rank=cfg["time_step_rank"], residual_in_fp32=True, tie_word_embeddings=True,
                bos_token_id=0, eos_token_id=0, pad_token_id=0)
