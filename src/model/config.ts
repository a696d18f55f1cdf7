/**
 * The model's shape: one typed object, validated once, convertible to and from the
 * Hugging Face config.json of LlamaForCausalLM (or Qwen3ForCausalLM when qkNorm is on).
 */

export interface ModelConfig {
  /** Transformer blocks. */
  nLayer: number;
  /** Query heads H. */
  nHead: number;
  /** Key/value heads Hkv (grouped-query attention when < nHead; must divide nHead). */
  nKvHead: number;
  /** Model width C (head size D = C / H). */
  nEmbd: number;
  /** MLP hidden width F (SwiGLU). */
  ffnHidden: number;
  /** Vocabulary size V. */
  vocabSize: number;
  /** Longest sequence the model is trained for (RoPE tables are built this long). */
  contextLength: number;
  /** RoPE base θ. */
  ropeTheta: number;
  /** RMSNorm epsilon. */
  normEps: number;
  /** lm_head shares the embedding matrix. */
  tiedEmbeddings: boolean;
  /** Qwen3-style RMSNorm of each query/key head (over D) before RoPE. */
  qkNorm: boolean;
  /**
   * Per-head width D when it is not nEmbd / nHead (Qwen3-0.6B: 16 heads × 128 = 2048 ≠ 1024).
   * Queries are then [H·D] wide, o_proj maps H·D back to C. Absent: nEmbd / nHead.
   */
  headDim?: number;
  /** q_proj, k_proj and v_proj add a bias (Qwen2). Absent: false. */
  qkvBias?: boolean;
  /** RoPE frequency scaling (Hugging Face rope_scaling). Absent or null: none. */
  ropeScaling?: RopeScaling | null;
}

/**
 * RoPE scaling as Hugging Face defines it (transformers' modeling_rope_utils):
 *  - linear: every frequency divided by factor (positions stretched factor times);
 *  - llama3 (Llama 3.1+): frequencies whose wavelength is longer than
 *    original_max_position_embeddings / low_freq_factor are divided by factor, those shorter
 *    than original / high_freq_factor kept, and the band between interpolated smoothly.
 */
export type RopeScaling =
  | { type: "linear"; factor: number }
  | { type: "llama3"; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number };

/** The head size D: headDim when set, else nEmbd / nHead. */
export function headDimOf(c: Pick<ModelConfig, "nEmbd" | "nHead" | "headDim">): number {
  return c.headDim ?? c.nEmbd / c.nHead;
}

/**
 * RoPE inverse frequencies [D/2] in float64: θ^(−2i/D), then the scaling's rule (above).
 * Both the training forward and the decoder build their tables from this.
 */
export function ropeInvFreq(D: number, theta: number, scaling?: RopeScaling | null): Float64Array {
  const half = D / 2;
  const f = new Float64Array(half);
  for (let i = 0; i < half; i++) f[i] = Math.pow(theta, (-2 * i) / D);
  if (!scaling) return f;
  if (scaling.type === "linear") {
    for (let i = 0; i < half; i++) f[i] /= scaling.factor;
    return f;
  }
  const { factor, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositionEmbeddings: old } = scaling;
  const lowWavelen = old / lo, highWavelen = old / hi;
  for (let i = 0; i < half; i++) {
    const wavelen = (2 * Math.PI) / f[i];
    if (wavelen > lowWavelen) f[i] /= factor;                 // long wavelengths: interpolated
    else if (wavelen >= highWavelen) {                        // the band between: blended
      const smooth = (old / wavelen - lo) / (hi - lo);
      f[i] = (1 - smooth) * (f[i] / factor) + smooth * f[i];
    }                                                         // short wavelengths: kept
  }
  return f;
}

/** Llama's MLP width rule (as torch_reference.py): 2/3 of 4C, rounded up to a multiple of 32. */
export function defaultFfnHidden(nEmbd: number): number {
  return 32 * Math.ceil(Math.floor((8 * nEmbd) / 3) / 32);
}

/** A validation failure; the message names the field and what is wrong. */
export class ModelConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ModelConfigError";
  }
}

/**
 * Throws ModelConfigError (naming the setting) unless the config describes a buildable model.
 * `where` prefixes the message (e.g. a file name or "--heads").
 */
export function validateConfig(c: ModelConfig, where = "model config"): ModelConfig {
  const fail = (msg: string): never => {
    throw new ModelConfigError(`${where}: ${msg}`);
  };
  const positiveInt = (name: keyof ModelConfig): void => {
    const v = c[name];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) fail(`${name} must be a positive integer, got ${JSON.stringify(v)}`);
  };
  for (const k of ["nLayer", "nHead", "nKvHead", "nEmbd", "ffnHidden", "vocabSize", "contextLength"] as const) positiveInt(k);
  if (c.headDim !== undefined) positiveInt("headDim");
  else if (c.nEmbd % c.nHead !== 0) {
    fail(`the width ${c.nEmbd} is not divisible by the number of heads ${c.nHead} (each head gets width/heads channels)`);
  }
  if (c.nHead % c.nKvHead !== 0) {
    fail(`the number of heads ${c.nHead} is not divisible by the number of key/value heads ${c.nKvHead}`);
  }
  const D = headDimOf(c);
  if (D % 2 !== 0) fail(`the head size ${c.headDim !== undefined ? `(headDim) ${D}` : `${c.nEmbd}/${c.nHead} = ${D}`} is odd; RoPE rotates channel pairs and needs an even head size`);
  if (c.qkvBias !== undefined && typeof c.qkvBias !== "boolean") fail(`qkvBias must be true or false`);
  const rs = c.ropeScaling;
  if (rs) {
    if (!(rs.factor > 0) || !Number.isFinite(rs.factor)) fail(`ropeScaling.factor must be a positive number, got ${rs.factor}`);
    if (rs.type === "llama3" && !(rs.highFreqFactor > rs.lowFreqFactor && rs.lowFreqFactor > 0 && rs.originalMaxPositionEmbeddings > 0))
      fail(`ropeScaling (llama3) needs 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0`);
  }
  if (!(c.ropeTheta > 0) || !Number.isFinite(c.ropeTheta)) fail(`ropeTheta must be a positive number, got ${c.ropeTheta}`);
  if (!(c.normEps > 0) || !(c.normEps < 1)) fail(`normEps must be in (0, 1), got ${c.normEps}`);
  if (typeof c.tiedEmbeddings !== "boolean") fail(`tiedEmbeddings must be true or false`);
  if (typeof c.qkNorm !== "boolean") fail(`qkNorm must be true or false`);
  return c;
}

/** The shape settings a preset fixes; vocabulary and context come from the data. */
export type ShapePreset = Pick<ModelConfig, "nLayer" | "nHead" | "nKvHead" | "nEmbd">;

/**
 * Size presets, smallest first. Parameter counts below are for a 65-character vocabulary
 * (tiny ones) or a 32k BPE vocabulary (the larger ones), untied.
 *   tiny         2 × 64, 4 heads        ≈ 0.1M + embeddings
 *   small        4 × 128, 4 heads       ≈ 0.8M      (nanoGPT's CPU recipe)
 *   shakespeare  6 × 384, 6 heads       ≈ 10.6M     (nanoGPT's shakespeare_char)
 *   base         8 × 512, 8 heads, 4 kv ≈ 22M + 2·16M embeddings at V = 32k
 *   medium       12 × 768, 12 heads, 4 kv ≈ 73M + embeddings (≈100M tied at V = 32k)
 */
export const PRESETS: Readonly<Record<string, ShapePreset>> = {
  tiny: { nLayer: 2, nHead: 4, nKvHead: 4, nEmbd: 64 },
  small: { nLayer: 4, nHead: 4, nKvHead: 4, nEmbd: 128 },
  shakespeare: { nLayer: 6, nHead: 6, nKvHead: 6, nEmbd: 384 },
  base: { nLayer: 8, nHead: 8, nKvHead: 4, nEmbd: 512 },
  medium: { nLayer: 12, nHead: 12, nKvHead: 4, nEmbd: 768 },
};

/** A full config from a preset name plus overrides; ffnHidden defaults to Llama's rule. */
export function configFromPreset(
  name: string,
  rest: Partial<ModelConfig> & Pick<ModelConfig, "vocabSize" | "contextLength">,
): ModelConfig {
  const p = PRESETS[name];
  if (!p) throw new ModelConfigError(`unknown preset "${name}"; choose one of ${Object.keys(PRESETS).join(", ")}`);
  const shape = { ...p, ...stripUndefined(rest) };
  // More or fewer heads without a kv setting keep the preset's grouping (or plain multi-head).
  if (rest.nHead !== undefined && rest.nKvHead === undefined) {
    const group = p.nHead / p.nKvHead;
    shape.nKvHead = rest.nHead % group === 0 ? rest.nHead / group : rest.nHead;
  }
  return validateConfig({
    ropeTheta: 10000,
    normEps: 1e-5,
    tiedEmbeddings: false,
    qkNorm: false,
    ...shape,
    // The MLP follows the (possibly overridden) width unless set explicitly.
    ffnHidden: rest.ffnHidden ?? defaultFfnHidden(shape.nEmbd),
  } as ModelConfig, `preset ${name}`);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Number of parameters (embedding included; lm_head counted once when tied). */
export function parameterCount(c: ModelConfig): number {
  const D = headDimOf(c);
  const kv = c.nKvHead * D, q = c.nHead * D;
  const perLayer = 2 * c.nEmbd + c.nEmbd * q * 2 + 2 * kv * c.nEmbd + 3 * c.nEmbd * c.ffnHidden + (c.qkNorm ? 2 * D : 0) + (c.qkvBias ? q + 2 * kv : 0);
  return c.vocabSize * c.nEmbd * (c.tiedEmbeddings ? 1 : 2) + c.nLayer * perLayer + c.nEmbd;
}

/**
 * Training FLOPs per token, as torch_reference.py counts them: 6 × (weights used in matrix
 * products, lm_head included, embedding lookup not) + 12·L·T·C for attention.
 */
export function flopsPerToken(c: ModelConfig, T: number): number {
  const D = headDimOf(c);
  const kv = c.nKvHead * D, q = c.nHead * D;
  const matmul = c.nLayer * (2 * q * c.nEmbd + 2 * kv * c.nEmbd + 3 * c.nEmbd * c.ffnHidden) + c.vocabSize * c.nEmbd;
  return 6 * matmul + 12 * c.nLayer * T * q;
}

/** The architectures mynah reads and writes, by Hugging Face class name → model_type. */
export const HF_ARCHITECTURES = { LlamaForCausalLM: "llama", Qwen2ForCausalLM: "qwen2", Qwen3ForCausalLM: "qwen3" } as const;
type HfArch = keyof typeof HF_ARCHITECTURES;

/**
 * The Hugging Face config.json object for this model: Qwen3ForCausalLM with QK-norm,
 * Qwen2ForCausalLM with q/k/v biases, else LlamaForCausalLM.
 */
export function toHfConfig(c: ModelConfig): Record<string, unknown> {
  if (c.qkNorm && c.qkvBias) throw new ModelConfigError("model config: QK-norm together with q/k/v biases has no Hugging Face architecture");
  const arch: HfArch = c.qkNorm ? "Qwen3ForCausalLM" : c.qkvBias ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
  const rs = c.ropeScaling;
  return {
    architectures: [arch],
    model_type: HF_ARCHITECTURES[arch],
    vocab_size: c.vocabSize,
    hidden_size: c.nEmbd,
    intermediate_size: c.ffnHidden,
    num_hidden_layers: c.nLayer,
    num_attention_heads: c.nHead,
    num_key_value_heads: c.nKvHead,
    head_dim: headDimOf(c),
    hidden_act: "silu",
    max_position_embeddings: c.contextLength,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    tie_word_embeddings: c.tiedEmbeddings,
    ...(arch === "Qwen2ForCausalLM" ? { use_sliding_window: false } : { attention_bias: false, mlp_bias: false }),
    ...(rs ? {
      rope_scaling: rs.type === "linear" ? { rope_type: "linear", factor: rs.factor }
        : { rope_type: "llama3", factor: rs.factor, low_freq_factor: rs.lowFreqFactor, high_freq_factor: rs.highFreqFactor,
            original_max_position_embeddings: rs.originalMaxPositionEmbeddings },
    } : {}),
    torch_dtype: "float32",
  };
}

/**
 * ModelConfig from a Hugging Face config.json object (LlamaForCausalLM, Qwen2ForCausalLM,
 * Qwen3ForCausalLM). `file` names the source in error messages. Anything that changes the
 * math in a way mynah does not implement is refused naming the field and its value.
 */
export function fromHfConfig(j: Record<string, unknown>, file = "config.json"): ModelConfig {
  const fail = (msg: string): never => {
    throw new ModelConfigError(`${file}: ${msg}`);
  };
  const num = (k: string, dflt?: number, o: Record<string, unknown> = j, where = ""): number => {
    const v = o[k] ?? dflt;
    if (typeof v !== "number" || !Number.isFinite(v)) fail(`field "${where}${k}" must be a number, got ${JSON.stringify(o[k])}`);
    return v as number;
  };
  const known = Object.keys(HF_ARCHITECTURES).join(", ");
  let arch: HfArch;
  if (j.architectures !== undefined && j.architectures !== null) {
    const a = j.architectures;
    if (!Array.isArray(a) || a.length !== 1 || !(String(a[0]) in HF_ARCHITECTURES))
      fail(`field "architectures" is ${JSON.stringify(a)}; mynah reads ${known}`);
    arch = (a as string[])[0] as HfArch;
  } else {
    const found = Object.entries(HF_ARCHITECTURES).find(([, t]) => t === j.model_type);
    if (!found) fail(`field "model_type" is ${JSON.stringify(j.model_type)} and there is no "architectures"; mynah reads ${known}`);
    arch = found![0] as HfArch;
  }
  const bad = (field: string, why: string): never => fail(`field "${field}" is ${JSON.stringify(j[field])}: ${why}`);
  if (j.hidden_act !== undefined && j.hidden_act !== "silu") bad("hidden_act", "only silu (SwiGLU) is implemented");
  if (j.mlp_bias === true) bad("mlp_bias", "MLP biases are not implemented");
  if (arch !== "Qwen2ForCausalLM" && j.attention_bias === true) bad("attention_bias", `biases on every attention projection (o_proj too) are not implemented for ${arch}`);
  if (j.use_sliding_window === true) bad("use_sliding_window", "sliding-window attention is not implemented");
  if (j.quantization_config !== undefined && j.quantization_config !== null) bad("quantization_config", "quantized checkpoints are not read (use F32, F16 or BF16 weights)");
  let ropeScaling: RopeScaling | null = null;
  const rsj = j.rope_scaling;
  if (rsj !== undefined && rsj !== null) {
    if (typeof rsj !== "object" || Array.isArray(rsj)) bad("rope_scaling", "expected an object or null");
    const r = rsj as Record<string, unknown>;
    const type = r.rope_type ?? r.type;
    if (type === "default") ropeScaling = null;
    else if (type === "linear") ropeScaling = { type: "linear", factor: num("factor", undefined, r, "rope_scaling.") };
    else if (type === "llama3") {
      ropeScaling = {
        type: "llama3", factor: num("factor", undefined, r, "rope_scaling."),
        lowFreqFactor: num("low_freq_factor", undefined, r, "rope_scaling."), highFreqFactor: num("high_freq_factor", undefined, r, "rope_scaling."),
        originalMaxPositionEmbeddings: num("original_max_position_embeddings", undefined, r, "rope_scaling."),
      };
    } else fail(`field "rope_scaling" has rope_type ${JSON.stringify(type)}; mynah implements "llama3" and "linear" RoPE scaling`);
  }
  const nHead = num("num_attention_heads");
  const nEmbd = num("hidden_size");
  const hd = j.head_dim;
  if (hd !== undefined && hd !== null && typeof hd !== "number") bad("head_dim", "expected a number");
  const headDim = typeof hd === "number" && hd !== nEmbd / nHead ? hd : undefined;
  const c: ModelConfig = {
    nLayer: num("num_hidden_layers"),
    nHead,
    nKvHead: num("num_key_value_heads", nHead),
    nEmbd,
    ffnHidden: num("intermediate_size"),
    vocabSize: num("vocab_size"),
    contextLength: num("max_position_embeddings"),
    ropeTheta: num("rope_theta", 10000),
    normEps: num("rms_norm_eps", 1e-6),
    tiedEmbeddings: Boolean(j.tie_word_embeddings ?? false),
    qkNorm: arch === "Qwen3ForCausalLM",
  };
  if (headDim !== undefined) c.headDim = headDim;
  if (arch === "Qwen2ForCausalLM") c.qkvBias = true;
  if (ropeScaling) c.ropeScaling = ropeScaling;
  return validateConfig(c, file);
}
