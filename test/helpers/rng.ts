// xorshift32: a small reproducible random stream for fuzzers (print the seed on failure).
export function rng(seed: number) {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>>= 0);
  };
  return { next, below: (n: number) => (n <= 0 ? 0 : next() % n), byte: () => next() & 255 };
}
export type Rng = ReturnType<typeof rng>;
