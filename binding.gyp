{
  "targets": [
    {
      "target_name": "mynah",
      "sources": [
        "native/binding.c",
        "native/pool.c",
        "native/gemm.c",
        "native/gemm_small.c",
        "native/ops.c",
        "native/embedding.c",
        "native/norm.c",
        "native/rope.c",
        "native/attention.c",
        "native/swiglu.c",
        "native/crossentropy.c",
        "native/optim.c",
        "native/gemv_quant.c"
      ],
      "cflags!": ["-O2"],
      "cflags": ["-O3", "-std=gnu11", "-fno-math-errno", "-fno-trapping-math", "-Wall", "-Wno-unused-function"],
      "ldflags": ["-pthread"],
      "conditions": [
        ["target_arch=='x64'", { "cflags": ["-march=native"] }],
        ["target_arch=='arm64' and OS!='mac'", { "cflags": ["-mcpu=native"] }],
        ["OS=='mac'", { "xcode_settings": { "OTHER_CFLAGS": ["-O3", "-std=gnu11", "-fno-math-errno"], "GCC_OPTIMIZATION_LEVEL": "3" } }]
      ]
    }
  ]
}
