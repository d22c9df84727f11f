// A training's pulse for the experiments' logs: a line at most every `seconds` (default 5) while an epoch
// runs, so that a long epoch never leaves the terminal silent. Used as a Trainer onStep/onEpoch pair.
import type { EpochInfo, StepInfo } from '../train/trainer.js';

export function heartbeat(log: (l: string) => void, label: string, epochs: number, stepsPerEpoch: number, seconds = 5): { onStep: (s: StepInfo) => void; onEpoch: (e: EpochInfo) => void } {
  let last = performance.now();
  return {
    onStep: (s) => {
      const now = performance.now();
      if (now - last < seconds * 1000) return;
      last = now;
      log(`    ${label}: epoch ${s.epoch + 1}/${epochs}, batch ${s.batch + 1}/${stepsPerEpoch}, loss ${s.loss.toFixed(2)}, β ${s.beta.toPrecision(3)}`);
    },
    onEpoch: () => {
      last = performance.now();
    },
  };
}
