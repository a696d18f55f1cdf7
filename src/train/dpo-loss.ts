/**
 * The DPO objective on sequence log-probabilities, forward beside backward, in float64.
 *
 * For pair i with policy log-probs πc, πr of the chosen and rejected reply (sums over the
 * reply tokens, or means with length normalisation) and the frozen reference's rc, rr:
 *
 *   h_i = (πc − rc) − (πr − rr)                       (how much more the policy prefers chosen)
 *   sigmoid (DPO):  ℓ = −(1−ε)·log σ(βh) − ε·log σ(−βh)     ε = label smoothing (cDPO)
 *   ipo:            ℓ = (h − 1/(2β))²
 *   hinge (SLiC):   ℓ = max(0, 1 − βh)
 *   L = mean_i ℓ_i,   ∂L/∂πc_i = ℓ'(h_i)/P,   ∂L/∂πr_i = −ℓ'(h_i)/P
 *
 * The metrics are TRL's: rewards/chosen = β(πc − rc), rewards/rejected = β(πr − rr), their
 * margin, the fraction of pairs whose chosen reward is higher, and the policy log-probs.
 */

export type DpoLossKind = "sigmoid" | "ipo" | "hinge";
export const DPO_LOSSES: readonly DpoLossKind[] = ["sigmoid", "ipo", "hinge"];

export interface DpoLossOptions {
  kind: DpoLossKind;
  beta: number;
  /** ε: the probability that a label is flipped (sigmoid only). */
  labelSmoothing: number;
}

export interface DpoPairs {
  /** Policy and reference log-probs per pair (already length-normalised when that is on). */
  policyChosen: ArrayLike<number>;
  policyRejected: ArrayLike<number>;
  refChosen: ArrayLike<number>;
  refRejected: ArrayLike<number>;
}

export interface DpoLossResult {
  loss: number;
  /** ∂L/∂πc_i and ∂L/∂πr_i (L is the mean over pairs). */
  dChosen: Float64Array;
  dRejected: Float64Array;
  metrics: DpoMetrics;
}

/** TRL's names. */
export interface DpoMetrics {
  "rewards/chosen": number;
  "rewards/rejected": number;
  "rewards/accuracies": number;
  "rewards/margins": number;
  "logps/chosen": number;
  "logps/rejected": number;
}

/** log σ(x) without overflow. */
export function logSigmoid(x: number): number {
  return x >= 0 ? -Math.log1p(Math.exp(-x)) : x - Math.log1p(Math.exp(x));
}

export function sigmoid(x: number): number {
  return x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x));
}

/** ℓ(h) and ℓ'(h) of one pair. */
export function pairLoss(h: number, o: DpoLossOptions): { loss: number; grad: number } {
  const { beta: b, labelSmoothing: e } = o;
  switch (o.kind) {
    case "sigmoid":
      // d/dh −log σ(βh) = −β σ(−βh);  d/dh −log σ(−βh) = β σ(βh)
      return { loss: -(1 - e) * logSigmoid(b * h) - e * logSigmoid(-b * h), grad: -(1 - e) * b * sigmoid(-b * h) + e * b * sigmoid(b * h) };
    case "ipo": {
      const d = h - 1 / (2 * b);
      return { loss: d * d, grad: 2 * d };
    }
    case "hinge":
      return b * h < 1 ? { loss: 1 - b * h, grad: -b } : { loss: 0, grad: 0 };
  }
}

export function checkDpoLoss(o: DpoLossOptions): string | null {
  if (!DPO_LOSSES.includes(o.kind)) return `--loss must be one of ${DPO_LOSSES.join(", ")}, got ${o.kind}`;
  if (!(o.beta > 0 && Number.isFinite(o.beta))) return `--beta must be a positive number, got ${o.beta}`;
  if (!(o.labelSmoothing >= 0 && o.labelSmoothing < 0.5)) return `--label-smoothing must be in [0, 0.5), got ${o.labelSmoothing}`;
  if (o.labelSmoothing > 0 && o.kind !== "sigmoid") return `--label-smoothing applies to --loss sigmoid only (got --loss ${o.kind})`;
  return null;
}

/** The loss over P pairs, its gradient w.r.t. the policy log-probs, and the metrics. */
export function dpoLoss(x: DpoPairs, o: DpoLossOptions): DpoLossResult {
  const P = x.policyChosen.length;
  const dChosen = new Float64Array(P);
  const dRejected = new Float64Array(P);
  let loss = 0, rc = 0, rr = 0, acc = 0, lc = 0, lr = 0;
  for (let i = 0; i < P; i++) {
    const c = x.policyChosen[i] - x.refChosen[i];
    const r = x.policyRejected[i] - x.refRejected[i];
    const { loss: l, grad: g } = pairLoss(c - r, o);
    loss += l;
    dChosen[i] = g / P;
    dRejected[i] = -g / P;
    rc += o.beta * c;
    rr += o.beta * r;
    if (c > r) acc++;
    lc += x.policyChosen[i];
    lr += x.policyRejected[i];
  }
  const m = P > 0 ? 1 / P : NaN;
  return {
    loss: loss * m, dChosen, dRejected,
    metrics: {
      "rewards/chosen": rc * m, "rewards/rejected": rr * m, "rewards/accuracies": acc * m,
      "rewards/margins": (rc - rr) * m, "logps/chosen": lc * m, "logps/rejected": lr * m,
    },
  };
}
