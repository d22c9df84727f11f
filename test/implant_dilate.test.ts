// dilate26 (three separable 1-D passes) against the definition: a voxel is set when it or any of its
// 26 neighbours inside the grid is set. Random masks on odd, thin and one-voxel-wide grids.
import test from 'ava';
import { dilate26 } from '../ts/completion/implant.js';

function reference(m: Uint8Array, [D, H, W]: readonly [number, number, number]): Uint8Array {
  const out = new Uint8Array(m.length);
  for (let d = 0; d < D; d++)
    for (let h = 0; h < H; h++)
      for (let w = 0; w < W; w++) {
        let on = 0;
        for (let a = -1; a <= 1 && !on; a++)
          for (let b = -1; b <= 1 && !on; b++)
            for (let c = -1; c <= 1 && !on; c++) {
              const dd = d + a, hh = h + b, ww = w + c;
              if (dd >= 0 && dd < D && hh >= 0 && hh < H && ww >= 0 && ww < W && m[(dd * H + hh) * W + ww]) on = 1;
            }
        out[(d * H + h) * W + w] = on;
      }
  return out;
}

test('dilate26 equals the 26-neighbourhood definition on random masks, edges included', (t) => {
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const shapes: [number, number, number][] = [[7, 5, 9], [1, 6, 4], [3, 1, 8], [2, 3, 1], [1, 1, 1], [16, 12, 10]];
  for (const shape of shapes) {
    for (const density of [0, 0.02, 0.2, 1]) {
      const n = shape[0] * shape[1] * shape[2];
      const m = Uint8Array.from({ length: n }, () => (rand() < density ? 1 : 0));
      const got = dilate26(m, shape);
      t.deepEqual(Array.from(got), Array.from(reference(m, shape)), `${shape.join('×')} at density ${density}`);
      t.not(got, m, 'a new array');
    }
  }
});
