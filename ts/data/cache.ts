// A least-recently-used cache bounded in bytes, with de-duplication of loads in flight: what lets a
// dataset larger than memory stream from disk while the volumes used often stay loaded.

export interface CacheStats {
  entries: number;
  bytes: number;
  maxBytes: number;
  hits: number;
  misses: number;
  evictions: number;
  /** Largest `bytes` seen (never above maxBytes). */
  peakBytes: number;
}

export class ByteLru<K, V> {
  private readonly map = new Map<K, { value: V; bytes: number }>();
  private readonly inflight = new Map<K, Promise<V>>();
  private bytes = 0;
  private hits = 0;
  private misses = 0;
  private evictions = 0;
  private peak = 0;

  constructor(
    readonly maxBytes: number,
    private readonly sizeOf: (v: V) => number,
  ) {}

  get(key: K): V | undefined {
    const e = this.map.get(key);
    if (!e) return undefined;
    this.map.delete(key);
    this.map.set(key, e);
    return e.value;
  }

  set(key: K, value: V): void {
    const bytes = this.sizeOf(value);
    const old = this.map.get(key);
    if (old) {
      this.map.delete(key);
      this.bytes -= old.bytes;
    }
    if (bytes > this.maxBytes) return; // too large to keep: used once, then dropped
    while (this.bytes + bytes > this.maxBytes) {
      const oldest = this.map.keys().next();
      if (oldest.done) break;
      const e = this.map.get(oldest.value)!;
      this.map.delete(oldest.value);
      this.bytes -= e.bytes;
      this.evictions++;
    }
    this.map.set(key, { value, bytes });
    this.bytes += bytes;
    this.peak = Math.max(this.peak, this.bytes);
  }

  /** The cached value, or the result of `load` (one load per key at a time), cached. */
  async getOrLoad(key: K, load: () => Promise<V>): Promise<V> {
    const hit = this.get(key);
    if (hit !== undefined) {
      this.hits++;
      return hit;
    }
    const running = this.inflight.get(key);
    if (running) {
      this.hits++;
      return running;
    }
    this.misses++;
    const p = load().then(
      (v) => {
        this.inflight.delete(key);
        this.set(key, v);
        return v;
      },
      (err: unknown) => {
        this.inflight.delete(key);
        throw err;
      },
    );
    this.inflight.set(key, p);
    return p;
  }

  clear(): void {
    this.map.clear();
    this.bytes = 0;
  }

  stats(): CacheStats {
    return { entries: this.map.size, bytes: this.bytes, maxBytes: this.maxBytes, hits: this.hits, misses: this.misses, evictions: this.evictions, peakBytes: this.peak };
  }
}
