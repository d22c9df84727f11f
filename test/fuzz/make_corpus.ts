// Writes test/fuzz/corpus/: the inputs of issue 17's findings that a file carries (1, 2, 3's
// unloadable checkpoint, 4, 7, 10), replayed by every fuzz run (scripts/fuzz.ts) and parents of its
// mutants. Deterministic: `node --import tsx test/fuzz/make_corpus.ts` rewrites the same bytes.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { monaiVarAutoEncoder } from '../../ts/config.js';
import { createVolume, encodeNifti, encodeNrrd } from '../../ts/data/index.js';
import { gzipSync } from 'node:zlib';
import { parseSafetensors, serializeSafetensors, toFloat32, toNumbers, type TensorToWrite } from '../../ts/safetensors.js';
import { Vae } from '../../ts/vae.js';

const DIR = path.join(path.dirname(fileURLToPath(import.meta.url)), 'corpus');
const put = (target: string, name: string, bytes: Uint8Array | string): void => {
  mkdirSync(path.join(DIR, target), { recursive: true });
  writeFileSync(path.join(DIR, target, name), typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
};

// NIfTI
const vol = createVolume([4, 3, 2], Uint8Array.from({ length: 24 }, (_, i) => i % 2));
const noform = Buffer.from(encodeNifti(vol));
noform.writeInt16LE(0, 252);
noform.writeInt16LE(0, 254);
put('nifti', 'f10-no-forms.nii', noform);
const two = Buffer.alloc(544 + 24);
two.writeInt32LE(540, 0);
two.write('n+2\0\r\n\x1a\n', 4, 'latin1');
put('nifti', 'f10-nifti2.nii', two);
const bomb = Buffer.from(encodeNifti(vol).subarray(0, 352));
bomb.writeInt16LE(2000, 42);
bomb.writeInt16LE(2000, 44);
bomb.writeInt16LE(500, 46);
put('nifti', 'f2-gzip-size-claim.nii.gz', gzipSync(bomb));

// NRRD
put('nrrd', 'f2-ascii-3.8GB-claim.nrrd', 'NRRD0004\ntype: float\ndimension: 3\nsizes: 1000 1000 950\nencoding: ascii\n\n1 2 3\n');
const geo = 'space directions: (1,0,0) (0,1,0) (0,0,1)\n';
put('nrrd', 'f10-spcae.nrrd', `NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 1 1\nspcae: left-posterior-superior\n${geo}encoding: ascii\n\n3 4\n`);
put('nrrd', 'f10-space-direction.nrrd', 'NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 1 1\nspace: left-posterior-superior\nspace direction: (2,0,0) (0,2,0) (0,0,2)\nencoding: ascii\n\n3 4\n');
put('nrrd', 'f10-space-orgin.nrrd', `NRRD0004\ntype: uchar\ndimension: 3\nsizes: 2 1 1\nspace: left-posterior-superior\n${geo}space orgin: (5,6,7)\nencoding: ascii\n\n3 4\n`);
put('nrrd', 'f10-ascii-inf-nan.nrrd', 'NRRD0004\ntype: float\ndimension: 3\nsizes: 4 1 1\nencoding: ascii\n\ninf -inf nan -nan\n');
put('nrrd', 'f2-gzip-size-claim.nrrd', Buffer.concat([Buffer.from('NRRD0004\ntype: uchar\ndimension: 3\nsizes: 1500 1500 1500\nencoding: gzip\n\n', 'latin1'), gzipSync(Buffer.alloc(64))]));
put('nrrd', 'valid-gzip.nrrd', await encodeNrrd(vol, { encoding: 'gzip' }));

// Checkpoints (the same files for the native and the WebAssembly loader)
const cfg = monaiVarAutoEncoder({ inputShape: [8, 8, 8], channels: [2, 4], latentSize: 3, norm: 'batch' });
const vae = await Vae.create(cfg, { seed: 1 });
await vae.trainStep({ input: new Float32Array(512).map((_, k) => (k * 7) % 3 === 0 ? 1 : 0), shape: [1, 1, 8, 8, 8] }, { optimizer: { lr: 1e-3 } });
const tmp = path.join(os.tmpdir(), `voxvae-corpus-${process.pid}.safetensors`);
await vae.save(tmp);
vae.dispose();
const st = parseSafetensors(new Uint8Array(readFileSync(tmp)));
rmSync(tmp);
const tensors = new Map<string, TensorToWrite>();
for (const [k, e] of st.tensors) tensors.set(k, e.dtype === 'I64' ? { dtype: 'I64', shape: e.shape, data: toNumbers(e) } : { dtype: 'F32', shape: e.shape, data: toFloat32(e) });
const meta = JSON.parse(st.metadata.voxvae!) as Record<string, unknown>;
const both = (name: string, m: Record<string, unknown>, t = tensors): void => {
  const bytes = serializeSafetensors(t, { voxvae: JSON.stringify(m), format: 'pt' });
  put('native', name, bytes);
  put('wasm', name, bytes);
};
const withCfg = (change: Record<string, unknown>): Record<string, unknown> => ({ ...meta, config: { ...(meta.config as object), ...change }, decoderConfig: { ...(meta.decoderConfig as object), ...change } });
both('valid.safetensors', meta);
both('f1-input512.safetensors', withCfg({ inputShape: [512, 512, 512] }));
both('f1-input1024.safetensors', withCfg({ inputShape: [1024, 1024, 1024] }));
both('f1-latent65536.safetensors', withCfg({ latentSize: 65536 }));
both('f4-no-adamsteps.safetensors', { ...meta, adamSteps: undefined });
both('f4-null-adamsteps.safetensors', { ...meta, adamSteps: null });
both('f7-params-over-4GiB.safetensors', withCfg({ inputShape: [256, 256, 256], channels: [64, 64], latentSize: 4096 }));
const nan = new Map(tensors);
const rv = [...nan.keys()].find((k) => k.endsWith('running_var'))!;
const bad = Float32Array.from(nan.get(rv)!.data as Float32Array);
bad[0] = NaN;
nan.set(rv, { ...nan.get(rv)!, data: bad });
both('f3-nan-running-var.safetensors', meta, nan);
console.log(`corpus written to ${DIR}`);
