// Backend selection: 'cpu' (the addon of native.ts), 'cuda' (build/cuda/voxvae_cuda.node, built by
// `npm run build:cuda`) or 'auto' (CUDA when the addon loads and its probe finds a device, the driver
// and cuDNN; otherwise the CPU with a one-line note saying why). Loading and probing never crash the
// process: every failure becomes a reason string.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { VoxvaeError } from './errors.js';
import { ADDON_ABI, native, type NativeBinding } from './native.js';
import type { Backend } from './types.js';

export interface CudaProbe {
  ok: boolean;
  reason: string;
  device: string;
  computeCapability: string;
  driverVersion: number;
  runtimeVersion: number;
  cudnnVersion: number;
  cudnnBuilt: boolean;
  totalMemory: number;
}

/** What the CUDA addon adds to NativeBinding. */
export interface CudaBinding extends Omit<NativeBinding, 'backend'> {
  readonly backend: 'cuda';
  probe(): CudaProbe;
  memoryStats(): { inUse: number; cached: number; peak: number; deviceMallocs: number; requests: number; convPlans: number };
  emptyCache(): void;
  /** profile: time every node's forward and backward (nets' profile() reads the totals; each pass synchronises). */
  setOptions(o: { tf32?: boolean; deterministic?: boolean; workspaceMiB?: number; profile?: boolean }): { tf32: boolean; deterministic: boolean; workspaceMiB: number; profile: boolean };
}

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Where the CUDA addon is looked for: $VOXVAE_CUDA_ADDON, else build/cuda/voxvae_cuda.node. */
export function cudaAddonPath(): string {
  return process.env.VOXVAE_CUDA_ADDON || path.join(ROOT, 'build', 'cuda', 'voxvae_cuda.node');
}

let cached: { binding: CudaBinding | null; reason: string; probe: CudaProbe | null } | undefined;

/** Turns a dlopen message into what is missing and how to fix it. */
function explainLoadError(file: string, msg: string): string {
  if (/cannot open shared object file|no such file|cannot find module/i.test(msg) && msg.includes(file)) return `the CUDA addon is not built (${file}): run \`npm run build:cuda\``;
  if (/libcudnn/i.test(msg)) return `libcudnn could not be loaded (${msg.split('\n')[0]}): set LD_LIBRARY_PATH to cuDNN 9's lib folder or rebuild with CUDNN_ROOT`;
  if (/libcuda\.so/i.test(msg)) return 'the NVIDIA driver (libcuda.so.1) is not installed';
  return `${file} could not be loaded: ${msg.split('\n')[0]}`;
}

/** Loads and probes the CUDA addon once; never throws. */
export function probeCuda(): { binding: CudaBinding | null; reason: string; probe: CudaProbe | null } {
  if (cached) return cached;
  const file = cudaAddonPath();
  let binding: CudaBinding;
  try {
    binding = createRequire(import.meta.url)(file) as CudaBinding;
  } catch (e) {
    return (cached = { binding: null, reason: explainLoadError(file, (e as Error).message), probe: null });
  }
  if (binding.abiVersion !== ADDON_ABI || binding.backend !== 'cuda' || typeof binding.probe !== 'function')
    return (cached = { binding: null, reason: `${file} is not a voxvae CUDA addon of ABI ${ADDON_ABI}: rebuild it with \`npm run build:cuda\``, probe: null });
  let p: CudaProbe;
  try {
    p = binding.probe();
  } catch (e) {
    return (cached = { binding: null, reason: `the CUDA probe failed: ${(e as Error).message}`, probe: null });
  }
  if (!p.ok) return (cached = { binding: null, reason: p.reason, probe: p });
  return (cached = { binding, reason: '', probe: p });
}

const noted = new Set<string>();

/**
 * The binding for a backend name. 'cuda' throws EUNSUPPORTED with the reason when CUDA is unusable;
 * 'auto' falls back to the CPU and writes one line to stderr (once per reason).
 */
export function selectBackend(name: Backend = 'cpu'): NativeBinding {
  if (name === 'cpu') return native();
  if (name !== 'cuda' && name !== 'auto') throw new VoxvaeError('EINVAL', `options.backend must be 'cpu', 'cuda' or 'auto', got ${JSON.stringify(name)}`, { path: 'options.backend' });
  const r = probeCuda();
  if (r.binding) return r.binding as unknown as NativeBinding;
  if (name === 'cuda') throw new VoxvaeError('EUNSUPPORTED', `backend 'cuda' is not available: ${r.reason}`, { path: 'options.backend' });
  if (!noted.has(r.reason)) {
    noted.add(r.reason);
    process.stderr.write(`voxvae: backend 'auto' uses the CPU (CUDA unavailable: ${r.reason})\n`);
  }
  return native();
}
