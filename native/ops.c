// Element-wise and row-wise kernels (to be filled: RMSNorm, RoPE, attention, SwiGLU,
// cross-entropy, embedding, AdamW, Muon, gradient norm).
#include "napi_util.h"
#include "pool.h"

void register_ops(napi_env env, napi_value exports) { (void)env; (void)exports; }
