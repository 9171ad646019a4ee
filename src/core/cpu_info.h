// cpu_info.h - what the machine offers: cores for the default thread count, the CPU's name.
#pragma once

#include <string>

namespace slm {

// Physical cores this process may run on (SMT siblings counted once), from the affinity mask
// and /sys/devices/system/cpu/cpu*/topology; falls back to std::thread::hardware_concurrency.
// Token generation is memory-bound, so a second hyper-thread per core only adds contention.
int physical_cores();

// "AMD EPYC 9R45", from /proc/cpuinfo's "model name"; "unknown" if absent.
std::string cpu_model_name();

// The SIMD features kernels care about, space-separated in a fixed order, from /proc/cpuinfo's
// "flags" (x86: "avx2 fma f16c avx512f avx512bw avx512vl avx512dq avx512_vnni avx512_bf16 ...")
// or "Features" (Arm: "asimd asimddp fphp sve ..."); "" if unknown.
std::string cpu_simd_flags();

} // namespace slm
