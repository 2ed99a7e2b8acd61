/**
 * Token buckets keyed by a string (a client address before authentication, a site id after).
 * Each key holds up to `capacity` tokens and regains `refillPerS` per second; an action costs
 * one token and is refused when none is left. At most `maxKeys` buckets are kept (the least
 * recently used is dropped), so a flood of addresses cannot grow memory without bound.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; atMs: number }>();

  constructor(
    private readonly capacity: number,
    private readonly refillPerS: number,
    private readonly now: () => number = Date.now,
    private readonly maxKeys = 10_000,
  ) {}

  /** Whether `key` has a token now, without taking it (to charge only failed attempts, e.g. wrong sign-in tokens). */
  hasToken(key: string): boolean {
    const b = this.buckets.get(key);
    return !b || Math.min(this.capacity, b.tokens + ((this.now() - b.atMs) / 1000) * this.refillPerS) >= 1;
  }

  /** Takes one token for `key`; false when the bucket is empty. */
  take(key: string): boolean {
    const t = this.now();
    let b = this.buckets.get(key);
    if (b) {
      this.buckets.delete(key); // re-insert: Map order is recency
      b.tokens = Math.min(this.capacity, b.tokens + ((t - b.atMs) / 1000) * this.refillPerS);
      b.atMs = t;
    } else {
      b = { tokens: this.capacity, atMs: t };
      if (this.buckets.size >= this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
    }
    this.buckets.set(key, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  size(): number {
    return this.buckets.size;
  }
}
