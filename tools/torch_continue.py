"""Continues a webslope run in PyTorch with DDP (torch.distributed), for a user who outgrows one GPU.

  torchrun --nproc_per_node 1 tools/torch_continue.py --ckpt out/ckpt.safetensors --data input.txt --steps 200
  torchrun --nproc_per_node 8 tools/torch_continue.py ... (each rank draws its own batches)
The model comes from webslope_ckpt.load_gpt (SLoPe layers as the masked-dense simulation with
the checkpoint's masks, adapters included); AdamW resumes from the checkpoint's moments where it
has them (optimizer.adamw.* and optimizer.sparse_adamw.*). Prints the loss every --log-every steps
on rank 0 and saves the continued model with torch.save to --out.
"""
import argparse
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from webslope_ckpt import load_gpt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--data", required=True, help="the training text (the checkpoint's character vocabulary)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=None, help="per rank; default the checkpoint's")
    ap.add_argument("--lr", type=float, default=None, help="default the checkpoint's")
    ap.add_argument("--log-every", type=int, default=20)
    ap.add_argument("--out", default="torch_continued.pt")
    a = ap.parse_args()
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    dev = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(dev)
    model, meta, tensors = load_gpt(a.ckpt)
    opts = (meta.get("trainer") or {}).get("options", {})
    B = a.batch_size or opts.get("batchSize", 32)
    lr = a.lr or opts.get("lr", 1e-3)
    if rank == 0 and a.lr is None and meta["step"] >= opts.get("totalSteps", float("inf")):
        # The webslope schedule ends near zero; a constant peak lr on a finished run jolts the loss up.
        print(f"note: the checkpoint ended its {opts['totalSteps']}-step schedule; continuing at its peak lr {lr} (pass --lr to choose)", flush=True)
    T = meta["config"]["blockSize"]
    chars = meta["tokenizer"]["chars"]
    stoi = {c: i for i, c in enumerate(chars)}
    text = open(a.data, encoding="utf-8").read()
    data = torch.tensor([stoi[c] for c in text if c in stoi], dtype=torch.long)
    n = int(len(data) * 0.9)
    train = data[:n]
    model.to(dev).train()
    names = {p: k for k, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=opts.get("weightDecay", 0.1))
    # resume the moments the checkpoint has (torch names; adapters are <layer>.adapter.L/R in webslope)
    for p, k in names.items():
        key = k.replace("adapter_L", "adapter.L").replace("adapter_R", "adapter.R")
        m = tensors.get(f"optimizer.adamw.{key}.exp_avg", tensors.get(f"optimizer.sparse_adamw.{key}.exp_avg"))
        v = tensors.get(f"optimizer.adamw.{key}.exp_avg_sq", tensors.get(f"optimizer.sparse_adamw.{key}.exp_avg_sq"))
        if m is not None and v is not None and m.shape == p.shape:
            opt.state[p] = {"step": torch.tensor(float(meta["step"])), "exp_avg": m.to(dev), "exp_avg_sq": v.to(dev)}
    ddp = DDP(model, device_ids=[dev.index] if cuda else None)
    g = torch.Generator().manual_seed(1337 + rank)
    for step in range(a.steps):
        ix = torch.randint(len(train) - T - 1, (B,), generator=g)
        x = torch.stack([train[i : i + T] for i in ix]).to(dev)
        y = torch.stack([train[i + 1 : i + T + 1] for i in ix]).to(dev)
        _, loss = ddp(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), opts.get("gradClip", 1.0))
        opt.step()
        if rank == 0 and (step % a.log_every == 0 or step == a.steps - 1):
            print(f"step {meta['step'] + step + 1}: loss {loss.item():.4f} (world {world}, batch {B}/rank)", flush=True)
    if rank == 0:
        torch.save({"model": model.state_dict(), "config": meta["config"], "chars": chars}, a.out)
        print(f"saved {a.out}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
