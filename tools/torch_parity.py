"""Loads a webslope checkpoint into the equivalent PyTorch model and prints its loss on a batch.

The batch and webslope's loss on it come from tools/batch_loss.ts (same checkpoint):
  deno run -A tools/batch_loss.ts --ckpt out/ckpt.safetensors --data input.txt --out batch.json
  python tools/torch_parity.py --ckpt out/ckpt.safetensors --batch batch.json
SLoPe layers run as the masked-dense simulation (see webslope_ckpt.py). Exit code 1 when the
losses differ by more than --tol (default 1e-4).
"""
import argparse
import json

import torch

from webslope_ckpt import load_gpt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--batch", required=True, help="JSON {x, y, loss} from tools/batch_loss.ts")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model, meta, _ = load_gpt(a.ckpt)
    model.to(a.device).eval()
    b = json.load(open(a.batch))
    x = torch.tensor(b["x"], dtype=torch.long, device=a.device)
    y = torch.tensor(b["y"], dtype=torch.long, device=a.device)
    with torch.no_grad():
        _, loss = model(x, y)
    ours = float(b["loss"])
    diff = abs(loss.item() - ours)
    print(json.dumps({"torch": loss.item(), "webslope": ours, "absDiff": diff, "step": meta["step"], "tol": a.tol, "ok": diff <= a.tol}))
    raise SystemExit(0 if diff <= a.tol else 1)


if __name__ == "__main__":
    main()
