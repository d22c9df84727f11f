"""PyTorch twin of voxvae's training step (encoder -> reparameterize -> decoder -> softmax-Dice + KL ->
backward -> Adam) on the same specs, batch and precision, eager mode with cudnn.benchmark; prints one
JSON line per configuration: step time (median of timed steps after warm-up), decode time (eval mode,
softmax and the copy to the host included, as voxvae's decode returns host arrays), peak GPU memory.
Usage: python3 bench/gpu/torch_step.py OUT.json ENC.spec DEC.spec BATCH C D H W LATENT [steps] [model]"""
import json, sys, time
import torch
from spec_torch import SpecNet

out, enc_spec, dec_spec = sys.argv[1], open(sys.argv[2]).read(), open(sys.argv[3]).read()
B, C, D, H, W, L = (int(v) for v in sys.argv[4:10])
steps = int(sys.argv[10]) if len(sys.argv) > 10 else 20
model = sys.argv[11] if len(sys.argv) > 11 else ''
dev = torch.device('cuda')
results = []
for tf32 in (False, True):
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    enc, dec = SpecNet(enc_spec).to(dev), SpecNet(dec_spec).to(dev)
    opt = torch.optim.Adam(list(enc.parameters()) + list(dec.parameters()), lr=1e-4)
    x = (torch.rand(B, C, D, H, W, device=dev) > 0.6).float()
    labels = x[:, 0].long()

    def step():
        opt.zero_grad(set_to_none=False)
        mu, logvar = enc(x)
        mu, logvar = mu.reshape(B, -1), logvar.reshape(B, -1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        (logits,) = dec(z.reshape(B, L, 1, 1, 1))
        p = torch.softmax(logits, 1)
        g = torch.nn.functional.one_hot(labels, p.shape[1]).permute(0, 4, 1, 2, 3).float()
        dims = (2, 3, 4)
        dice = 1 - (2 * (p * g).sum(dims) + 1e-5) / (g.sum(dims) + p.sum(dims) + 1e-5)
        kl = -0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum()
        loss = 80 * dice.sum() + kl
        loss.backward()
        opt.step()
        return loss

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    with torch.no_grad():
        enc.eval(); dec.eval()
        zs = torch.randn(B, L, 1, 1, 1, device=dev)
        def decode():
            (lg,) = dec(zs)
            return torch.softmax(lg, 1).cpu()
        for _ in range(2):
            decode()
        torch.cuda.synchronize()
        dt = []
        for _ in range(steps):
            t0 = time.perf_counter(); decode(); dt.append(time.perf_counter() - t0)
    times.sort(); dt.sort()
    results.append({'engine': 'pytorch', 'model': model, 'precision': 'tf32' if tf32 else 'fp32', 'batch': B, 'step_ms': 1e3 * times[len(times) // 2],
                    'decode_ms': 1e3 * dt[len(dt) // 2], 'peak_mib': torch.cuda.max_memory_allocated() / 2**20,
                    'device': torch.cuda.get_device_name(), 'torch': torch.__version__, 'cudnn': torch.backends.cudnn.version()})
json.dump(results, open(out, 'w'), indent=1)
print(json.dumps(results))
