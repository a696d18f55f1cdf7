# The addon: binding.c + pool.c (compiled for the architecture's baseline) linked with the kernel
# files compiled once per instruction-set level (a static library each); binding.c picks a level
# at load time by CPUID. The kernel file list is native/kernels.h's MYNAH_KERNELS, read by
# scripts/kernel-files.mjs (gyp's <!@ runs it), so a new kernel file is added in one place.
{
  "variables": {
    "kernel_sources": ["<!@(node scripts/kernel-files.mjs)", "native/ops.c"],
    "common_cflags": ["-O3", "-std=gnu11", "-fno-math-errno", "-fno-trapping-math", "-Wall", "-Wno-unused-function"],
    # x86-64-v3 and v4, spelled as feature flags so older compilers take them too
    "avx2_cflags": ["-mavx", "-mavx2", "-mfma", "-mbmi", "-mbmi2", "-mf16c", "-mlzcnt", "-mmovbe", "-mpopcnt", "-msse4.2"],
    "avx512_cflags": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx512cd"]
  },
  "target_defaults": {
    "cflags!": ["-O2"],
    "cflags": ["<@(common_cflags)"],
    "xcode_settings": { "GCC_OPTIMIZATION_LEVEL": "3", "OTHER_CFLAGS": ["<@(common_cflags)"] }
  },
  "targets": [
    {
      "target_name": "mynah",
      "sources": ["native/binding.c", "native/pool.c"],
      "dependencies": ["mynah_kernels_portable"],
      "ldflags": ["-pthread"],
      "conditions": [
        ["target_arch=='x64'", { "dependencies": ["mynah_kernels_avx2", "mynah_kernels_avx512"] }]
      ]
    },
    {
      "target_name": "mynah_kernels_portable",
      "type": "static_library",
      "sources": ["<@(kernel_sources)"],
      "defines": ["MYNAH_LEVEL=portable"],
      "cflags": ["-fPIC"]
    }
  ],
  "conditions": [
    ["target_arch=='x64'", {
      "targets": [
        {
          "target_name": "mynah_kernels_avx2",
          "type": "static_library",
          "sources": ["<@(kernel_sources)"],
          "defines": ["MYNAH_LEVEL=avx2"],
          "cflags": ["-fPIC", "<@(avx2_cflags)"],
          "xcode_settings": { "OTHER_CFLAGS": ["<@(common_cflags)", "<@(avx2_cflags)"] }
        },
        {
          "target_name": "mynah_kernels_avx512",
          "type": "static_library",
          "sources": ["<@(kernel_sources)"],
          "defines": ["MYNAH_LEVEL=avx512"],
          "cflags": ["-fPIC", "<@(avx2_cflags)", "<@(avx512_cflags)"],
          "xcode_settings": { "OTHER_CFLAGS": ["<@(common_cflags)", "<@(avx2_cflags)", "<@(avx512_cflags)"] }
        }
      ]
    }]
  ]
}
