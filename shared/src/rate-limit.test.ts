import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { RateLimiter } from './rate-limit.js';

describe('RateLimiter', () => {
  it('allows a burst of `capacity`, then refills at the set rate', () => {
    let t = 0;
    const rl = new RateLimiter(3, 2, () => t);
    assert.deepEqual([rl.take('a'), rl.take('a'), rl.take('a'), rl.take('a')], [true, true, true, false]);
    assert.equal(rl.take('b'), true, 'keys are independent');
    t = 499;
    assert.equal(rl.take('a'), false, '0.998 tokens after 499 ms at 2/s');
    t = 1000;
    // 0.998 left at 499 ms, + 1.002 by 1000 ms: two tokens.
    assert.deepEqual([rl.take('a'), rl.take('a'), rl.take('a')], [true, true, false]);
  });
  it('keeps at most maxKeys buckets, dropping the least recently used', () => {
    const rl = new RateLimiter(1, 0, () => 0, 2);
    rl.take('a');
    rl.take('b');
    rl.take('a');
    rl.take('c');
    assert.equal(rl.size(), 2);
    assert.equal(rl.take('a'), false, 'a was kept (recently used) and is empty');
    assert.equal(rl.take('b'), true, 'b was dropped, so it starts full again');
  });
  it('tells whether a key has a token without taking one', () => {
    let t = 0;
    const rl = new RateLimiter(2, 1, () => t);
    assert.equal(rl.hasToken('a'), true, 'an unseen key starts full');
    rl.take('a');
    rl.take('a');
    assert.equal(rl.hasToken('a'), false);
    assert.equal(rl.hasToken('a'), false, 'asking takes nothing');
    t = 1000;
    assert.equal(rl.hasToken('a'), true, 'one token back after a second at 1/s');
    assert.equal(rl.take('a'), true);
  });
});
