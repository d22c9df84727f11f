#!/usr/bin/python3
"""PyTorch side of `npm run bench`: the same MONAI-structure VAE models as voxvae, timed on the CPU.

Run with the system interpreter (torch 1.13 CPU), e.g.

    /usr/bin/python3 bench/torch_bench.py peak
    /usr/bin/python3 bench/torch_bench.py model '{"task":"train","inputShape":[64,64,32],"channels":[32,64,64,128,128],"latent":32,"batch":4,"warmup":1,"reps":5}'
    /usr/bin/python3 bench/torch_bench.py layers '{"batch":4,"warmup":1,"reps":3,"layers":[{"name":"enc0","kind":"conv","cin":1,"cout":32,"in":[64,64,32],"needDx":false}]}'

Each mode prints one line `@@JSON {...}` at the end (bench/index.ts parses it). The thread count is
`--threads N` (default 2); OMP_WAIT_POLICY is whatever the environment says (index.ts runs each mode
with and without OMP_WAIT_POLICY=PASSIVE and keeps the faster one).

The model re-implements MONAI's VarAutoEncoder(spatial_dims=3, num_res_units=0, norm=BATCH, act=PRELU)
without importing MONAI: encoder blocks Conv3d(k3, s2, p1) -> BatchNorm3d -> PReLU, Linear mu / logvar,
decoder Linear -> ReLU -> view, ConvTranspose3d(k3, s2, p1, op1) -> BatchNorm3d -> PReLU per block, the
last block convolution only. Loss: 80 * Dice(softmax, one-hot target, reduction sum) + beta * KL (sum),
Adam(lr=1e-4) -- skullVAE's training step, which is what voxvae's Vae.trainStep computes by default.
Decode: decoder forward then softmax over the classes under torch.inference_mode(), eval mode -- what voxvae's
vae.decode(z) returns by default (probabilities).
"""
import json
import os
import re
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def status_kb(field):
    with open('/proc/self/status') as f:
        m = re.search(r'^%s:\s+(\d+)\s+kB' % field, f.read(), re.M)
    return int(m.group(1)) if m else None


def reset_peak_rss():
    """Resets VmHWM to the current RSS (Linux: `echo 5 > /proc/self/clear_refs`). Returns success."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


class VarAutoEncoder(nn.Module):
    def __init__(self, in_shape, channels, latent, in_channels=1, out_channels=2):
        super().__init__()
        final = list(in_shape)
        enc = []
        c_in = in_channels
        for c in channels:
            enc += [nn.Conv3d(c_in, c, 3, stride=2, padding=1), nn.BatchNorm3d(c), nn.PReLU()]
            c_in = c
            final = [(d + 2 - 3) // 2 + 1 for d in final]
        self.encode = nn.Sequential(*enc)
        self.final = final
        flat = channels[-1] * final[0] * final[1] * final[2]
        self.mu = nn.Linear(flat, latent)
        self.logvar = nn.Linear(flat, latent)
        self.decodeL = nn.Linear(latent, flat)
        outs = list(channels[-2::-1]) + [out_channels]
        dec = []
        c_in = channels[-1]
        for i, c in enumerate(outs):
            dec.append(nn.ConvTranspose3d(c_in, c, 3, stride=2, padding=1, output_padding=1))
            if i != len(outs) - 1:
                dec += [nn.BatchNorm3d(c), nn.PReLU()]
            c_in = c
        self.decode = nn.Sequential(*dec)
        self.last = channels[-1]

    def encode_forward(self, x):
        h = self.encode(x).flatten(1)
        return self.mu(h), self.logvar(h)

    def decode_forward(self, z):
        h = F.relu(self.decodeL(z)).view(z.shape[0], self.last, *self.final)
        return self.decode(h)

    def forward(self, x):
        mu, logvar = self.encode_forward(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode_forward(z), mu, logvar


def dice_loss_sum(logits, target):
    """MONAI DiceLoss(to_onehot_y=True, softmax=True, reduction='sum'), smooth 1e-5."""
    p = torch.softmax(logits, 1)
    t = F.one_hot(target.long(), p.shape[1]).permute(0, 4, 1, 2, 3).to(p.dtype)
    dims = (2, 3, 4)
    inter = (p * t).sum(dims)
    denom = p.sum(dims) + t.sum(dims)
    return (1.0 - (2.0 * inter + 1e-5) / (denom + 1e-5)).sum()


def timed(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return ts


def summary(ts):
    return {'median_s': statistics.median(ts), 'min_s': min(ts), 'times_s': ts}


def mode_peak(args, threads):
    n = args.get('n', 2048)
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    c = torch.empty(n, n)
    ts = timed(lambda: torch.mm(a, b, out=c), args.get('warmup', 2), args.get('reps', 10))
    flops = 2.0 * n * n * n
    return {'n': n, 'sgemm_gflops': flops / min(ts) / 1e9, 'sgemm_gflops_median': flops / statistics.median(ts) / 1e9,
            **summary(ts)}


def mode_model(args, threads):
    torch.manual_seed(0)
    base_rss = status_kb('VmRSS')
    reset_ok = reset_peak_rss()
    model = VarAutoEncoder(args['inputShape'], args['channels'], args['latent'])
    n = args['batch']
    out = {'task': args['task'], 'batch': n}
    if args['task'] == 'train':
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        x = (torch.rand(n, 1, *args['inputShape']) < 0.5).float()
        target = x[:, 0]
        beta = 1.0

        def step():
            opt.zero_grad()
            logits, mu, logvar = model(x)
            kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            loss = 80.0 * dice_loss_sum(logits, target) + beta * kl
            loss.backward()
            opt.step()
        ts = timed(step, args['warmup'], args['reps'])
    else:
        model.eval()
        z = torch.randn(n, args['latent'])

        def dec():
            with torch.inference_mode():  # PyTorch's fastest inference context (no autograd bookkeeping)
                return torch.softmax(model.decode_forward(z), 1)
        ts = timed(dec, args['warmup'], args['reps'])
    out.update(summary(ts))
    out['base_rss_kb'] = base_rss
    out['peak_rss_kb'] = status_kb('VmHWM') if reset_ok else None
    out['params'] = sum(p.numel() for p in model.parameters())
    return out


def mode_layers(args, threads):
    """Each conv layer alone, batch `batch`: forward, backward (dx + dw + db), and backward without dx."""
    torch.manual_seed(0)
    n = args['batch']
    res = []
    for L in args['layers']:
        if L['kind'] == 'conv':
            m = nn.Conv3d(L['cin'], L['cout'], 3, stride=2, padding=1)
        else:
            m = nn.ConvTranspose3d(L['cin'], L['cout'], 3, stride=2, padding=1, output_padding=1)
        x0 = torch.randn(n, L['cin'], *L['in'])
        with torch.no_grad():
            y = m(x0)
        dy = torch.randn_like(y)
        row = {'name': L['name']}

        x_dx = x0.clone().requires_grad_(True)

        def fwd():
            with torch.no_grad():
                t0 = time.perf_counter()
                m(x0)
                return time.perf_counter() - t0

        def bwd(x):
            m.zero_grad(set_to_none=True)
            x.grad = None
            yy = m(x)
            t0 = time.perf_counter()
            yy.backward(dy)
            return time.perf_counter() - t0

        # Interleaved rounds (forward, backward without dx, backward with dx): dX is the median of the
        # paired differences.
        need_dx = L.get('needDx', True)
        tf, tw, tb = [], [], []
        for i in range(args['warmup'] + args['reps']):
            r = (fwd(), bwd(x0), bwd(x_dx) if need_dx else None)
            if i >= args['warmup']:
                tf.append(r[0])
                tw.append(r[1])
                if need_dx:
                    tb.append(r[2])
        row['fwd'] = summary(tf)
        row['bwd_w'] = summary(tw)
        if need_dx:
            row['bwd'] = summary(tb)
            row['dx'] = summary([b - w for b, w in zip(tb, tw)])
        res.append(row)
    return {'batch': n, 'layers': res}


def main():
    argv = sys.argv[1:]
    threads = 2
    if '--threads' in argv:
        i = argv.index('--threads')
        threads = int(argv[i + 1])
        del argv[i:i + 2]
    if not argv or argv[0] in ('-h', '--help') or argv[0] not in ('peak', 'model', 'layers'):
        print(__doc__)
        sys.exit(0 if argv and argv[0] in ('-h', '--help') else 2)
    mode = argv[0]
    args = json.loads(argv[1]) if len(argv) > 1 else {}
    torch.set_num_threads(threads)
    fn = {'peak': mode_peak, 'model': mode_model, 'layers': mode_layers}[mode]
    out = fn(args, threads)
    out.update({'torch': torch.__version__, 'threads': torch.get_num_threads(),
                'omp_wait_policy': os.environ.get('OMP_WAIT_POLICY', ''), 'mkldnn': torch.backends.mkldnn.is_available()})
    print('@@JSON ' + json.dumps(out), flush=True)


if __name__ == '__main__':
    main()
