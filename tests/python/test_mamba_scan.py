#!/usr/bin/env python3
"""Checks of the PyTorch training model in models/train/mamba_model.py (needs torch; skipped
without it): the parallel selective scan against a sequential loop, forward and gradients
(double precision, torch.autograd.gradcheck), on lengths that are and are not powers of two.

    python3 tests/python/test_mamba_scan.py
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "train"))


def main():
    try:
        import torch
    except ImportError:
        print("torch not installed: skipped")
        return 0
    from mamba_model import SelectiveScan, selective_scan_reference

    g = torch.Generator().manual_seed(0)
    bad = 0
    for (B, L, E, N) in [(1, 1, 3, 2), (2, 5, 4, 3), (2, 8, 3, 4), (1, 37, 5, 2), (3, 64, 2, 16)]:
        delta = (torch.rand(B, L, E, generator=g, dtype=torch.float64) * 0.5 + 0.01).requires_grad_()
        A = (-torch.rand(E, N, generator=g, dtype=torch.float64) * 4 - 0.1).requires_grad_()
        Bm = torch.randn(B, L, N, generator=g, dtype=torch.float64, requires_grad=True)
        Cm = torch.randn(B, L, N, generator=g, dtype=torch.float64, requires_grad=True)
        x = torch.randn(B, L, E, generator=g, dtype=torch.float64, requires_grad=True)
        args = (delta, A, Bm, Cm, x)
        y = SelectiveScan.apply(*args)
        y_ref = selective_scan_reference(*args)
        err = (y - y_ref).abs().max().item()
        gy = torch.randn(y.shape, generator=g, dtype=torch.float64)
        grads = torch.autograd.grad((y * gy).sum(), args)
        grads_ref = torch.autograd.grad((y_ref * gy).sum(), args)
        gerr = max((a - b).abs().max().item() / (b.abs().max().item() + 1e-12) for a, b in zip(grads, grads_ref))
        ok = err < 1e-10 and gerr < 1e-10
        if L <= 8:
            ok = ok and torch.autograd.gradcheck(SelectiveScan.apply, args)
        print(f"B={B} L={L} E={E} N={N}: forward max err {err:.2e}, grad rel err {gerr:.2e} {'ok' if ok else 'FAIL'}")
        bad += not ok
    print(f"{5 - bad} passed, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
