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
  if (c.nEmbd % c.nHead !== 0) {
    fail(`the width ${c.nEmbd} is not divisible by the number of heads ${c.nHead} (each head gets width/heads channels)`);
  }
  if (c.nHead % c.nKvHead !== 0) {
    fail(`the number of heads ${c.nHead} is not divisible by the number of key/value heads ${c.nKvHead}`);
  }
  const D = c.nEmbd / c.nHead;
  if (D % 2 !== 0) fail(`the head size ${c.nEmbd}/${c.nHead} = ${D} is odd; RoPE rotates channel pairs and needs an even head size`);
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
  const D = c.nEmbd / c.nHead;
  const kv = c.nKvHead * D;
  const perLayer = 2 * c.nEmbd + c.nEmbd * c.nEmbd * 2 + 2 * kv * c.nEmbd + 3 * c.nEmbd * c.ffnHidden + (c.qkNorm ? 2 * D : 0);
  return c.vocabSize * c.nEmbd * (c.tiedEmbeddings ? 1 : 2) + c.nLayer * perLayer + c.nEmbd;
}

/**
 * Training FLOPs per token, as torch_reference.py counts them: 6 × (weights used in matrix
 * products, lm_head included, embedding lookup not) + 12·L·T·C for attention.
 */
export function flopsPerToken(c: ModelConfig, T: number): number {
  const D = c.nEmbd / c.nHead;
  const kv = c.nKvHead * D;
  const matmul = c.nLayer * (2 * c.nEmbd * c.nEmbd + 2 * kv * c.nEmbd + 3 * c.nEmbd * c.ffnHidden) + c.vocabSize * c.nEmbd;
  return 6 * matmul + 12 * c.nLayer * T * c.nEmbd;
}

/** The Hugging Face config.json object for this model (LlamaForCausalLM, or Qwen3 with qkNorm). */
export function toHfConfig(c: ModelConfig): Record<string, unknown> {
  const [arch, type] = c.qkNorm ? ["Qwen3ForCausalLM", "qwen3"] : ["LlamaForCausalLM", "llama"];
  return {
    architectures: [arch],
    model_type: type,
    vocab_size: c.vocabSize,
    hidden_size: c.nEmbd,
    intermediate_size: c.ffnHidden,
    num_hidden_layers: c.nLayer,
    num_attention_heads: c.nHead,
    num_key_value_heads: c.nKvHead,
    head_dim: c.nEmbd / c.nHead,
    hidden_act: "silu",
    max_position_embeddings: c.contextLength,
    rms_norm_eps: c.normEps,
    rope_theta: c.ropeTheta,
    tie_word_embeddings: c.tiedEmbeddings,
    attention_bias: false,
    mlp_bias: false,
    torch_dtype: "float32",
  };
}

/**
 * ModelConfig from a Hugging Face config.json object (Llama or Qwen3 fields). `file` names the
 * source in error messages. Refuses settings mynah does not implement (biases, other head
 * sizes, activations other than SiLU, RoPE scaling).
 */
export function fromHfConfig(j: Record<string, unknown>, file = "config.json"): ModelConfig {
  const num = (k: string, dflt?: number): number => {
    const v = j[k] ?? dflt;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new ModelConfigError(`${file}: field "${k}" must be a number, got ${JSON.stringify(j[k])}`);
    }
    return v;
  };
  const arch = String((j.architectures as string[] | undefined)?.[0] ?? j.model_type ?? "");
  if (!/llama|qwen3/i.test(arch)) {
    throw new ModelConfigError(`${file}: architecture "${arch}" is not supported (LlamaForCausalLM or Qwen3ForCausalLM)`);
  }
  const nHead = num("num_attention_heads");
  const nEmbd = num("hidden_size");
  if (j.head_dim !== undefined && j.head_dim !== null && j.head_dim !== nEmbd / nHead) {
    throw new ModelConfigError(`${file}: head_dim ${String(j.head_dim)} differs from hidden_size / num_attention_heads = ${nEmbd / nHead}; mynah needs them equal`);
  }
  if (j.attention_bias === true || j.mlp_bias === true) throw new ModelConfigError(`${file}: biases are not supported`);
  if (j.hidden_act !== undefined && j.hidden_act !== "silu") throw new ModelConfigError(`${file}: hidden_act "${String(j.hidden_act)}" is not supported (silu only)`);
  if (j.rope_scaling !== undefined && j.rope_scaling !== null) throw new ModelConfigError(`${file}: rope_scaling is not supported`);
  return validateConfig({
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
    qkNorm: /qwen3/i.test(arch),
  }, file);
}
