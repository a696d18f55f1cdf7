// The op kernels other than GEMM, one file per idea, each with its forward beside its backward:
//   embedding.c  token embedding lookup / scatter-add
//   norm.c       RMSNorm
//   rope.c       rotary position embedding
//   attention.c  causal grouped-query attention (FlashAttention-style tiles), KV-cache decode
//   swiglu.c     SwiGLU activation
//   crossentropy.c  fused softmax + cross-entropy + gradient
//   optim.c      AdamW, Muon (Newton–Schulz on gemm()), sum of squares, scale
//   gemv_quant.c decoding products with F16 / Q8_0 weights converted on the fly
// This file only registers them with the addon.
#include "ops_common.h"

void register_ops(napi_env env, napi_value exports) {
  register_embedding(env, exports);
  register_norm(env, exports);
  register_rope(env, exports);
  register_attention(env, exports);
  register_swiglu(env, exports);
  register_crossentropy(env, exports);
  register_optim(env, exports);
  register_gemv_quant(env, exports);
}
