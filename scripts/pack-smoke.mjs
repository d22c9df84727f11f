// Run inside a project that installed the voxvae tarball: loads the package as a user would, reports
// which addon file loaded, and runs one training step and one decode of a small MONAI VAE. Exit 0 only
// when both give finite numbers and the addon came from the package's prebuilds/ (no local build).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(path.join(process.cwd(), 'x.js'));
const pkgDir = path.dirname(require.resolve('voxvae/package.json'));
const voxvae = await import('voxvae');
if (existsSync(path.join(pkgDir, 'build'))) throw new Error(`a local build exists in ${pkgDir}/build: something compiled at install`);
const { Vae, monaiVarAutoEncoder } = voxvae;
const config = monaiVarAutoEncoder({ inputShape: [16, 16, 16], channels: [4, 8], latentSize: 4 });
const vae = await Vae.create(config, { backend: 'cpu', seed: 0 });
const x = new Float32Array(2 * 16 * 16 * 16);
for (let i = 0; i < x.length; i++) x[i] = (i * 7919) % 13 < 4 ? 1 : 0;
const step = await vae.trainStep({ input: x, shape: [2, 1, 16, 16, 16] }, { beta: 1, optimizer: { kind: 'adam', lr: 1e-3 } });
const probs = await vae.decode(new Float32Array(2 * 4));
const ok = Number.isFinite(step.loss) && probs.length === 2 * 2 * 16 * 16 * 16 && probs.every(Number.isFinite);
const addon = path.relative(pkgDir, voxvae.addonFile());
console.log(`pack-smoke: ${process.platform}-${process.arch} node ${process.version}: train step loss ${step.loss.toFixed(3)}, decode ${probs.length} values, isa ${voxvae.cpuIsa()}, addon ${addon}`);
if (!ok) throw new Error('non-finite training step or decode');
if (!addon.startsWith('prebuilds/')) throw new Error(`the addon came from ${addon}, not the package's prebuilds/`);
