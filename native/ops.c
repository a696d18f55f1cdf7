// Registers every kernel file of one instruction-set level (this file is compiled once per
// level, like the kernel files; see kernels.h). The kernel files, one idea each, with each
// op's forward beside its backward:
//   gemm.c, gemm_small.c  matrix products (blocked; matrix-vector and tiny)
//   gemm_bf16.c  matrix products on bf16-rounded operands (VDPBF16PS, or its exact fallback)
//   embedding.c  token embedding lookup / scatter-add
//   norm.c       RMSNorm
//   rope.c       rotary position embedding
//   attention.c  causal grouped-query attention (FlashAttention-style tiles), KV-cache decode
//   swiglu.c     SwiGLU activation
//   crossentropy.c  fused softmax + cross-entropy + gradient
//   optim.c      AdamW, Muon (Newton–Schulz on gemm()), sum of squares, scale
#include "ops_common.h"

#define MYNAH_CALL_REGISTER(name) register_##name(env, exports);

void mynah_register_kernels(napi_env env, napi_value exports) {
  MYNAH_KERNELS(MYNAH_CALL_REGISTER)
}
