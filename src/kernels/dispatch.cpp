// dispatch.cpp - builds the per-type traits tables once and picks one from the CPU's features,
// as ggml-cpu picks its type_traits_cpu at build time and its backend variant at load time.
// The only file that knows which ISAs exist.
#include "kernels/kernels.h"

#include "kernels/ref/ref.h"
#if defined(SLM_HAVE_X86_KERNELS)
#include "kernels/x86/x86.h"
#include <cpuid.h>
#endif

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace slm::kernels {
namespace {

constexpr int kNumTypes = 40;  // ggml type ids 0..39 (MXFP4 is the last one types.h knows)

struct Tables {
    TypeTraits scalar[kNumTypes] = {};
    TypeTraits avx2[kNumTypes] = {};
    bool has_avx2 = false;
    const TypeTraits* best = nullptr;
    const char* best_name = "scalar";
};

// CPUID directly rather than __builtin_cpu_supports, which clang 14 lacks for "f16c": the CPU
// must have AVX2, FMA and F16C, and the OS must save the YMM registers (XCR0 bits 1 and 2).
bool cpu_runs_avx2() {
#if defined(SLM_HAVE_X86_KERNELS) && (defined(__x86_64__) || defined(__i386__))
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
    const bool fma = ecx & (1u << 12), osxsave = ecx & (1u << 27), avx = ecx & (1u << 28), f16c = ecx & (1u << 29);
    if (!(fma && osxsave && avx && f16c)) return false;
    unsigned xcr0_lo, xcr0_hi;
    __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0x6u) != 0x6u) return false;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    return ebx & (1u << 5);
#else
    return false;
#endif
}

Tables build_tables() {
    Tables t;
    ref::fill_traits(t.scalar, kNumTypes);
    t.best = t.scalar;
#if defined(SLM_HAVE_X86_KERNELS)
    // Types avx2.cpp leaves out keep their scalar kernels.
    std::memcpy(t.avx2, t.scalar, sizeof t.avx2);
    avx2::fill_traits(t.avx2, kNumTypes);
    avx2::fill_traits_kquants(t.avx2, kNumTypes);
    t.has_avx2 = cpu_runs_avx2();
    if (t.has_avx2) {
        t.best = t.avx2;
        t.best_name = "avx2";
    }
#endif
    if (const char* env = std::getenv("SLM_ISA"); env && *env) {
        if (std::strcmp(env, "scalar") == 0) {
            t.best = t.scalar;
            t.best_name = "scalar";
        } else if (std::strcmp(env, "avx2") == 0 && t.has_avx2) {
            t.best = t.avx2;
            t.best_name = "avx2";
        } else {
            std::fprintf(stderr, "slm: SLM_ISA=%s is not available on this CPU/build; using %s\n", env,
                         t.best_name);
        }
    }
    return t;
}

const Tables& tables() {
    static const Tables t = build_tables();
    return t;
}

const TypeTraits* lookup(const TypeTraits* table, GGMLType type) {
    const auto id = static_cast<uint32_t>(type);
    if (table == nullptr || id >= static_cast<uint32_t>(kNumTypes) || table[id].to_float == nullptr) return nullptr;
    return &table[id];
}

} // namespace

const TypeTraits* traits(GGMLType t) { return lookup(tables().best, t); }

const TypeTraits* ref_traits(GGMLType t) { return lookup(tables().scalar, t); }

const char* isa_name() { return tables().best_name; }

const TypeTraits* traits_for_isa(const char* isa, GGMLType t) {
    const Tables& tb = tables();
    if (std::strcmp(isa, "scalar") == 0) return lookup(tb.scalar, t);
    if (std::strcmp(isa, "avx2") == 0 && tb.has_avx2) return lookup(tb.avx2, t);
    return nullptr;
}

} // namespace slm::kernels
