/** Confidence intervals for accuracies. */

/** z for a two-sided 95 % interval. */
export const Z95 = 1.959963984540054;

/**
 * Wilson score interval for k successes in n trials (Wilson 1927): unlike p ± z·√(p(1−p)/n)
 * it stays inside [0, 1] and is not empty at 0 or n, which matters for small task files.
 *
 *   centre = (p + z²/2n) / (1 + z²/n),   half = z/(1 + z²/n) · √(p(1−p)/n + z²/4n²)
 */
export function wilson(k: number, n: number, z = Z95): { lo: number; hi: number } {
  if (n === 0) return { lo: 0, hi: 1 };
  const p = k / n, z2 = z * z;
  const d = 1 + z2 / n;
  const centre = (p + z2 / (2 * n)) / d;
  const half = (z / d) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return { lo: Math.max(0, centre - half), hi: Math.min(1, centre + half) };
}
