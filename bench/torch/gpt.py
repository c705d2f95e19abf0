"""The same GPT as webslope's (tools/webslope_ckpt.py builds it: pre-norm blocks, tanh GELU,
lm_head tied to wte, nanoGPT init) trained with the same AdamW (betas 0.9/0.999, eps 1e-8, weight
decay 0.1, lr 1e-3, clip 1.0) on the same shapes as bench/train.ts, timed on one GPU in fp32 with
TF32 off, TF32, and bf16 autocast (+ SDPA flash attention), writing bench/train.ts's JSON fields
(lib "torch"). Steps are timed with CUDA events after a warm-up; the loss is read back at the end.
    python3 bench/torch/gpt.py --configs tiny,mid,small,gpt2 --precisions fp32,tf32,bf16 --json out.json
Runs on the CPU too (--device cpu) for a smoke test, with no timing claims."""
import argparse, json, math, os, statistics, sys, time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from webslope_ckpt import GPT  # noqa: E402

CONFIGS = {  # as bench/train.ts
    "tiny": dict(nLayer=2, nEmbd=64, nHead=2, blockSize=32, batchSize=8),
    "mid": dict(nLayer=4, nEmbd=256, nHead=4, blockSize=128, batchSize=32),
    "small": dict(nLayer=6, nEmbd=384, nHead=6, blockSize=256, batchSize=64),
    "gpt2": dict(nLayer=12, nEmbd=768, nHead=12, blockSize=1024, batchSize=8),
}


def sdpa_forward(self, x):
    """Block.forward with torch's fused attention (flash where it applies)."""
    B, T, C = x.shape
    q, k, v = self.attn.c_attn(self.ln_1(x)).split(C, dim=2)
    q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
    y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.p if self.training else 0.0, is_causal=True)
    x = x + self.drop(self.attn.c_proj(y.transpose(1, 2).reshape(B, T, C)))
    return x + self.drop(self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x)), approximate="tanh")))


def init_weights(model, n_layer):
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            torch.nn.init.zeros_(p)
        elif "ln_" in name:
            torch.nn.init.ones_(p)
        else:
            std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
            torch.nn.init.normal_(p, 0.0, std)


def run(name, precision, dev, data, steps, warmup_s):
    c = CONFIGS[name]
    torch.manual_seed(1)
    cfg = dict(c, vocabSize=65, dropout=0.0)
    model = GPT(cfg).to(dev)
    init_weights(model, c["nLayer"])
    if precision == "bf16" and hasattr(F, "scaled_dot_product_attention"):
        for b in model.transformer.h:
            b.forward = sdpa_forward.__get__(b)
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    B, T = c["batchSize"], c["blockSize"]
    g = torch.Generator().manual_seed(1)

    def batch():
        ix = torch.randint(len(data) - T - 1, (B,), generator=g)
        x = torch.stack([data[i:i + T] for i in ix]).to(dev)
        y = torch.stack([data[i + 1:i + 1 + T] for i in ix]).to(dev)
        return x, y

    def step():
        x, y = batch()
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    first = step().item()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < warmup_s:
        step()
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, loss = [], None
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(steps):
            loss = step()
        sync()
        times.append((time.perf_counter() - t) * 1000 / steps)
    ms = statistics.median(times)
    return dict(lib="torch", config=name, mode="dense", precision=precision, **{k: c[k] for k in ("nLayer", "nEmbd", "nHead", "blockSize", "batchSize")},
                vocabSize=65, params=sum(p.numel() for p in model.parameters()), stepMs=ms, tokensPerS=B * T / (ms / 1000),
                peakBytes=torch.cuda.max_memory_allocated() if cuda else None, lossFirst=first, lossLast=loss.item(), steps=5 * steps,
                torch=torch.__version__, device=torch.cuda.get_device_name() if cuda else "cpu")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="tiny,mid,small,gpt2")
    ap.add_argument("--precisions", default="fp32,tf32,bf16")
    ap.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data", "tinyshakespeare.txt"))
    ap.add_argument("--steps", type=int, default=10, help="steps per timed batch (5 batches)")
    ap.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json")
    a = ap.parse_args()
    if os.path.exists(a.data):
        text = open(a.data, encoding="utf-8").read()
        chars = sorted(set(text))[:65]
        lut = {ch: i for i, ch in enumerate(chars)}
        data = torch.tensor([lut.get(ch, 0) for ch in text], dtype=torch.long)
    else:
        data = torch.randint(65, (1_000_000,), generator=torch.Generator().manual_seed(0))
    rows = []
    for name in a.configs.split(","):
        for p in a.precisions.split(","):
            r = run(name, p, torch.device(a.device), data, a.steps, a.warmup)
            rows.append(r)
            print(f"torch {name} {p}: {r['stepMs']:.2f} ms/step, {r['tokensPerS']:.0f} tokens/s, loss {r['lossFirst']:.3f} -> {r['lossLast']:.3f}", flush=True)
    if a.json:
        json.dump({"bench": "train-torch", "rows": rows}, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
