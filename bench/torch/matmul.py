"""PyTorch's matmul TFLOP/s on the same GPU, for bench/matmul-units.ts's table: fp32 (TF32 off),
TF32, fp16 and bf16, N x N x N, median of CUDA-event-timed batches after a warm-up.
    python3 bench/torch/matmul.py --sizes 2048,4096,8192 --json out.json"""
import argparse, json, statistics
import torch

p = argparse.ArgumentParser()
p.add_argument("--sizes", default="2048,4096,8192")
p.add_argument("--json")
a = p.parse_args()
rows = []
for n in [int(s) for s in a.sizes.split(",")]:
    for name, dtype, tf32 in [("fp32", torch.float32, False), ("tf32", torch.float32, True), ("fp16", torch.float16, False), ("bf16", torch.bfloat16, False)]:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        x = torch.randn(n, n, device="cuda", dtype=dtype)
        y = torch.randn(n, n, device="cuda", dtype=dtype)
        for _ in range(10):
            x @ y
        torch.cuda.synchronize()
        reps = max(5, int(2e12 / (2 * n ** 3)))
        times = []
        for _ in range(5):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            for _ in range(reps):
                x @ y
            e.record()
            torch.cuda.synchronize()
            times.append(s.elapsed_time(e) / reps)
        ms = statistics.median(times)
        rows.append({"variant": name, "N": n, "ms": ms, "tflops": 2 * n ** 3 / (ms * 1e-3) / 1e12})
        print(f"N={n} torch {name}: {rows[-1]['tflops']:.1f} TFLOP/s")
if a.json:
    json.dump({"bench": "torch-matmul", "torch": torch.__version__, "device": torch.cuda.get_device_name(), "rows": rows}, open(a.json, "w"), indent=1)
