/**
 * Learning-rate schedules, as a multiplier of the peak rate at an optimizer step (counting
 * from 0): a linear warmup over `warmup` steps, then
 *  - cosine: from 1 down to minRatio at the last step (Loshchilov & Hutter, SGDR);
 *  - wsd (warmup–stable–decay): 1 until the last `decayFraction` of the steps, then linear
 *    down to minRatio (as in MiniCPM; the long stable phase trains fast on small budgets).
 */
export type ScheduleKind = "cosine" | "wsd";

export interface Schedule {
  kind: ScheduleKind;
  /** Total optimizer steps. */
  steps: number;
  warmup: number;
  /** minLr / lr. */
  minRatio: number;
  /** wsd only: fraction of the steps spent decaying (default 0.2). */
  decayFraction?: number;
}

export function lrMultiplier(s: Schedule, step: number): number {
  if (step < s.warmup) return (step + 1) / s.warmup;
  const rest = Math.max(1, s.steps - s.warmup);
  const t = Math.min(1, (step - s.warmup) / rest);
  if (s.kind === "cosine") return s.minRatio + (1 - s.minRatio) * 0.5 * (1 + Math.cos(Math.PI * t));
  const decay = Math.max(1, Math.round((s.decayFraction ?? 0.2) * s.steps));
  const start = s.steps - decay;
  if (step < start) return 1;
  return 1 - (1 - s.minRatio) * Math.min(1, (step - start + 1) / decay);
}
