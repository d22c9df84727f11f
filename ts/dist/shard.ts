// Which items of an epoch's order a rank reads (data-parallel training, ts/dist).

/**
 * The part of an epoch's order that `rank` reads: like PyTorch's DistributedSampler, the order padded by
 * wrapping around to a multiple of worldSize, then every worldSize-th item from position rank. The
 * shards are disjoint and cover the order when worldSize divides its length; otherwise the first
 * (worldSize − length mod worldSize) items are read twice, so that every rank takes the same number of steps.
 */
export function shardOf<T>(order: readonly T[], rank: number, worldSize: number): T[] {
  if (worldSize <= 1 || order.length === 0) return order.slice();
  const total = Math.ceil(order.length / worldSize) * worldSize;
  const out: T[] = [];
  for (let i = rank; i < total; i += worldSize) out.push(order[i % order.length]!);
  return out;
}
