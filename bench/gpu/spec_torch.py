"""Builds a PyTorch module from a voxvae net spec (native/core/net.h) so that the benchmark runs the
very same network in both engines; weights are copied from the flat parameter array when given."""
import torch
import torch.nn as nn


class SpecNet(nn.Module):
    def __init__(self, spec: str):
        super().__init__()
        self.nodes, self.outputs, self.mods = [], [], nn.ModuleList()
        shapes = []
        for line in spec.splitlines():
            tok = line.split()
            if not tok or tok[0].startswith('#'):
                continue
            if tok[0] == 'output':
                self.outputs = [int(v) for v in tok[1:]]
                continue
            op, kv = tok[0], dict(t.split('=', 1) for t in tok[1:])
            ins = [int(v) for v in kv.get('in', '').split(',') if v != '']
            trip = lambda k, d: tuple(int(v) for v in kv.get(k, d).split(',')) * (3 if ',' not in kv.get(k, d) else 1)
            c = shapes[ins[0]][0] if ins else int(kv['c'])
            m, shape = nn.Identity(), shapes[ins[0]] if ins else (int(kv['c']), int(kv['d']), int(kv['h']), int(kv['w']))
            if op in ('conv3d', 'conv_transpose3d'):
                k, s, p, opad = trip('k', '1'), trip('s', '1'), trip('p', '0'), trip('op', '0')
                co, bias = int(kv['cout']), kv.get('bias', '1') == '1'
                if op == 'conv3d':
                    m = nn.Conv3d(c, co, k, s, p, bias=bias)
                    sp = [(shape[i + 1] + 2 * p[i] - k[i]) // s[i] + 1 for i in range(3)]
                else:
                    m = nn.ConvTranspose3d(c, co, k, s, p, output_padding=opad, bias=bias)
                    sp = [(shape[i + 1] - 1) * s[i] - 2 * p[i] + k[i] + opad[i] for i in range(3)]
                shape = (co, *sp)
            elif op == 'linear':
                m = nn.Linear(c, int(kv['out']), bias=kv.get('bias', '1') == '1')
                shape = (int(kv['out']), 1, 1, 1)
            elif op == 'batch_norm3d':
                m = nn.BatchNorm3d(c, eps=float(kv.get('eps', 1e-5)), momentum=float(kv.get('momentum', 0.1)), affine=kv.get('affine', '1') == '1')
            elif op == 'instance_norm3d':
                m = nn.InstanceNorm3d(c, eps=float(kv.get('eps', 1e-5)), affine=kv.get('affine', '1') == '1')
            elif op == 'prelu':
                m = nn.PReLU(int(kv.get('n', 1)))
            elif op == 'relu':
                m = nn.ReLU()
            elif op == 'leaky_relu':
                m = nn.LeakyReLU(float(kv.get('slope', 0.01)))
            elif op == 'sigmoid':
                m = nn.Sigmoid()
            elif op == 'softmax':
                m = nn.Softmax(dim=1)
            elif op == 'dropout':
                m = nn.Dropout(float(kv.get('rate', 0)))
            elif op == 'flatten':
                shape = (shape[0] * shape[1] * shape[2] * shape[3], 1, 1, 1)
            elif op == 'reshape':
                shape = (int(kv['c']), int(kv['d']), int(kv['h']), int(kv['w']))
            self.nodes.append((op, ins, shape))
            self.mods.append(m)
            shapes.append(shape)

    def forward(self, x):
        acts = []
        for (op, ins, shape), m in zip(self.nodes, self.mods):
            if op == 'input':
                y = x
            elif op == 'add':
                y = acts[ins[0]] + acts[ins[1]]
            elif op in ('flatten', 'reshape'):
                y = acts[ins[0]].reshape(x.shape[0], *shape)
            elif op == 'linear':
                y = m(acts[ins[0]].reshape(x.shape[0], -1)).reshape(x.shape[0], -1, 1, 1, 1)
            else:
                y = m(acts[ins[0]])
            acts.append(y)
        return [acts[o] for o in self.outputs]
