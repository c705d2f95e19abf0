"""Reads a webslope checkpoint (safetensors, nanoGPT names) into an equivalent PyTorch GPT.

Shared by torch_parity.py and torch_continue.py. A SLoPe layer runs as the masked-dense
simulation: forward x·(W⊙M_R)ᵀ + b, input gradient through W⊙M_R⊙M_RC, weight gradient masked by
M_R; its lazy adapter adds (1/r)·x·(L⊙M_L)·R. GELU is the tanh approximation, as in webslope.
"""
import json
import math
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "I32": torch.int32, "U8": torch.uint8}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        t = torch.frombuffer(bytearray(raw[base + b : base + end]), dtype=DTYPES[e["dtype"]]) if end > b else torch.zeros(0, dtype=DTYPES[e["dtype"]])
        tensors[name] = t.reshape(e["shape"]).clone()
    return tensors, json.loads(meta["webslope"])


class _MaskedLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, mr, mrc, b):
        ctx.save_for_backward(x, w, mr, mrc)
        y = x @ (w * mr).t()
        return y + b if b is not None else y

    @staticmethod
    def backward(ctx, g):
        x, w, mr, mrc = ctx.saved_tensors
        gx = g @ (w * mr * mrc)
        gw = (g.reshape(-1, g.shape[-1]).t() @ x.reshape(-1, x.shape[-1])) * mr
        gb = g.reshape(-1, g.shape[-1]).sum(0)
        return gx, gw, None, None, gb


class Linear(nn.Module):
    def __init__(self, d_in, d_out):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(d_out, d_in))
        self.bias = nn.Parameter(torch.zeros(d_out))
        self.sparse = False
        self.rank = 0

    def make_sparse(self, mask, mask_rc):
        self.sparse = True
        self.register_buffer("weight_mask", mask.float())
        self.register_buffer("weight_mask_rc", mask_rc.float())

    def add_adapter(self, L, R, L_mask):
        self.rank = L.shape[1]
        self.adapter_L = nn.Parameter(L.clone())
        self.adapter_R = nn.Parameter(R.clone())
        self.register_buffer("adapter_L_mask", L_mask.float())

    def forward(self, x):
        if self.sparse:
            y = _MaskedLinear.apply(x, self.weight, self.weight_mask, self.weight_mask_rc, self.bias)
        else:
            y = F.linear(x, self.weight, self.bias)
        if self.rank:
            y = y + (x @ (self.adapter_L * self.adapter_L_mask)) @ self.adapter_R / self.rank
        return y


class Block(nn.Module):
    def __init__(self, C, H, p):
        super().__init__()
        self.n_head, self.p = H, p
        self.ln_1, self.ln_2 = nn.LayerNorm(C), nn.LayerNorm(C)
        self.attn = nn.Module()
        self.attn.c_attn, self.attn.c_proj = Linear(C, 3 * C), Linear(C, C)
        self.mlp = nn.Module()
        self.mlp.c_fc, self.mlp.c_proj = Linear(C, 4 * C), Linear(4 * C, C)
        self.drop = nn.Dropout(p)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.attn.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(k.shape[-1])
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), float("-inf")).softmax(-1)
        att = F.dropout(att, self.p, self.training)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + self.drop(self.attn.c_proj(y))
        return x + self.drop(self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x)), approximate="tanh")))


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C, p = cfg["nEmbd"], cfg.get("dropout", 0.0)
        self.transformer = nn.Module()
        self.transformer.wte = nn.Embedding(cfg["vocabSize"], C)
        self.transformer.wpe = nn.Embedding(cfg["blockSize"], C)
        self.transformer.drop = nn.Dropout(p)
        self.transformer.h = nn.ModuleList([Block(C, cfg["nHead"], p) for _ in range(cfg["nLayer"])])
        self.transformer.ln_f = nn.LayerNorm(C)

    def forward(self, idx, targets=None):
        T = idx.shape[1]
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(torch.arange(T, device=idx.device)))
        for b in self.transformer.h:
            x = b(x)
        logits = self.transformer.ln_f(x) @ self.transformer.wte.weight.t()  # lm_head tied to wte
        loss = None if targets is None else F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return logits, loss


def load_gpt(path):
    """(model, meta, tensors): a torch GPT holding the checkpoint's weights, masks and adapters."""
    tensors, meta = read_safetensors(path)
    model = GPT(meta["config"])
    mods = dict(model.named_modules())
    for name, t in tensors.items():
        if name.endswith(".weight_mask"):
            mods[name[: -len(".weight_mask")]].make_sparse(t, tensors[name + "_rc"])
        elif name.endswith(".adapter.L"):
            mods[name[: -len(".adapter.L")]].add_adapter(t, tensors[name[:-1] + "R"], tensors[name + "_mask"])
    state = {k: v for k, v in tensors.items() if not k.startswith("optimizer.") and ".adapter." not in k and not k.endswith("_mask") and not k.endswith("_mask_rc")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("_mask") and not k.endswith("_mask_rc") and "adapter" not in k]
    if missing or unexpected:
        raise SystemExit(f"checkpoint does not fit the model: missing {missing}, unexpected {unexpected}")
    return model, meta, tensors
