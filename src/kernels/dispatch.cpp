// dispatch.cpp - builds the per-type traits tables once and picks one from the CPU's features,
// as ggml-cpu picks its type_traits_cpu at build time and its backend variant at load time.
// The only file that knows which ISAs exist.
#include "kernels/kernels.h"

#include "kernels/ref/ref.h"
#include "kernels/repack.h"
#include "kernels/sparse.h"
#include "kernels/vec.h"
#if defined(SLM_HAVE_X86_KERNELS)
#include "kernels/x86/x86.h"
#include "kernels/x86/x86_vec.h"
#include <cpuid.h>
#endif
#if defined(SLM_HAVE_ARM_KERNELS)
#include "kernels/arm/arm.h"
#include <sys/auxv.h>
#endif

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace slm::kernels {
namespace {

constexpr int kNumTypes = 40;  // ggml type ids 0..39 (MXFP4 is the last one types.h knows)
// slm's private types (kSlmTypeBase and up) follow ggml's in the tables: slot kNumTypes + i.
constexpr int kNumSlmTypes = 1;  // Q8_0_S24
constexpr int kNumSlots = kNumTypes + kNumSlmTypes;
constexpr int kSlotQ8_0_S24 = kNumTypes;

int slot_of(uint32_t id) {
    if (id < static_cast<uint32_t>(kNumTypes)) return static_cast<int>(id);
    if (id >= kSlmTypeBase && id - kSlmTypeBase < static_cast<uint32_t>(kNumSlmTypes))
        return kNumTypes + static_cast<int>(id - kSlmTypeBase);
    return -1;
}

struct Tables {
    TypeTraits scalar[kNumSlots] = {};
    TypeTraits avx2[kNumSlots] = {};
    TypeTraits avx512[kNumSlots] = {};
    TypeTraits neon[kNumSlots] = {};
    bool has_avx2 = false;
    bool has_avx512 = false;
    bool has_neon = false;
    const TypeTraits* best = nullptr;
    const char* best_name = "scalar";

    const TypeTraits* table(const char* isa) const {
        if (std::strcmp(isa, "scalar") == 0) return scalar;
        if (std::strcmp(isa, "avx2") == 0) return has_avx2 ? avx2 : nullptr;
        if (std::strcmp(isa, "avx512") == 0) return has_avx512 ? avx512 : nullptr;
        if (std::strcmp(isa, "neon") == 0) return has_neon ? neon : nullptr;
        return nullptr;
    }
};

// CPUID directly rather than __builtin_cpu_supports, which clang 14 lacks for "f16c": the CPU
// must have AVX2, FMA and F16C, and the OS must save the YMM registers (XCR0 bits 1 and 2).
[[maybe_unused]] bool cpu_runs_avx2() {
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

// AVX-512 F/BW/VL/DQ + VNNI (Ice Lake, Zen 4 and later), on top of what AVX2 needs, and the OS
// saving the opmask and ZMM state (XCR0 bits 5, 6, 7).
[[maybe_unused]] bool cpu_runs_avx512() {
#if defined(SLM_HAVE_X86_KERNELS) && (defined(__x86_64__) || defined(__i386__))
    if (!cpu_runs_avx2()) return false;
    unsigned eax, ebx, ecx, edx;
    unsigned xcr0_lo, xcr0_hi;
    __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0xe0u) != 0xe0u) return false;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    const bool f = ebx & (1u << 16), dq = ebx & (1u << 17), bw = ebx & (1u << 30), vl = ebx & (1u << 31);
    const bool vnni = ecx & (1u << 11);
    return f && dq && bw && vl && vnni;
#else
    return false;
#endif
}

// AVX512_VBMI2 (vpexpandb), which the Q8_0_S24 kernels need on top of cpu_runs_avx512().
[[maybe_unused]] bool cpu_runs_avx512_vbmi2() {
#if defined(SLM_HAVE_X86_KERNELS) && (defined(__x86_64__) || defined(__i386__))
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    return ecx & (1u << 6);
#else
    return false;
#endif
}

// AArch64 Advanced SIMD with the dot-product extension (SDOT/UDOT, Armv8.2-A and later).
[[maybe_unused]] bool cpu_runs_neon() {
#if defined(SLM_HAVE_ARM_KERNELS) && defined(__aarch64__)
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
    const unsigned long hw = getauxval(AT_HWCAP);
    return (hw & HWCAP_ASIMD) && (hw & HWCAP_ASIMDDP);
#else
    return false;
#endif
}

Tables build_tables() {
    Tables t;
    ref::fill_traits(t.scalar, kNumTypes);
    t.scalar[kSlotQ8_0_S24] = ref::traits_q8_0_s24();
    t.best = t.scalar;
#if defined(SLM_HAVE_X86_KERNELS)
    // Each ISA's translation unit is built with its own flags, so even its fill function may use
    // its instructions: it is only called when the CPU runs them. Types avx2.cpp leaves out keep
    // their scalar kernels.
    t.has_avx2 = cpu_runs_avx2();
    if (t.has_avx2) {
        std::memcpy(t.avx2, t.scalar, sizeof t.avx2);
        avx2::fill_traits(t.avx2, kNumTypes);
        avx2::fill_traits_kquants(t.avx2, kNumTypes);
        t.avx2[kSlotQ8_0_S24] = avx2::traits_q8_0_s24();
        t.best = t.avx2;
        t.best_name = "avx2";
    }
    // AVX-512 starts from the AVX2 table: a type without AVX-512 kernels keeps its AVX2 ones.
    t.has_avx512 = t.has_avx2 && cpu_runs_avx512();
    if (t.has_avx512) {
        std::memcpy(t.avx512, t.avx2, sizeof t.avx512);
        avx512::fill_traits(t.avx512, kNumTypes);
        avx512::fill_traits_kquants(t.avx512, kNumTypes);
        // Without VBMI2 the sparse type keeps its AVX2 kernels.
        if (cpu_runs_avx512_vbmi2()) t.avx512[kSlotQ8_0_S24] = avx512::traits_q8_0_s24();
        t.best = t.avx512;
        t.best_name = "avx512";
    }
#endif
#if defined(SLM_HAVE_ARM_KERNELS)
    t.has_neon = cpu_runs_neon();
    if (t.has_neon) {
        std::memcpy(t.neon, t.scalar, sizeof t.neon);
        neon::fill_traits(t.neon, kNumTypes);  // Q8_0_S24 keeps the scalar kernels here
        t.best = t.neon;
        t.best_name = "neon";
    }
#endif
    if (const char* env = std::getenv("SLM_ISA"); env && *env) {
        if (const TypeTraits* chosen = t.table(env)) {
            t.best = chosen;
            t.best_name = chosen == t.scalar ? "scalar" : chosen == t.avx2 ? "avx2" : chosen == t.avx512 ? "avx512" : "neon";
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
    const int slot = slot_of(static_cast<uint32_t>(type));
    if (table == nullptr || slot < 0 || table[slot].to_float == nullptr) return nullptr;
    return &table[slot];
}

} // namespace

const TypeTraits* traits(GGMLType t) { return lookup(tables().best, t); }

const TypeTraits* ref_traits(GGMLType t) { return lookup(tables().scalar, t); }

const char* isa_name() { return tables().best_name; }

const TypeTraits* traits_for_isa(const char* isa, GGMLType t) {
    return lookup(tables().table(isa), t);
}

// The attention vector ops (vec.h) follow the traits tables: the ISA isa_name() names, or the
// scalar reference for an ISA without vec ops (neon for now).
const VecOps* vec_ops_for_isa(const char* isa) {
    if (std::strcmp(isa, "scalar") == 0) return &ref::vec_ops();
#if defined(SLM_HAVE_X86_KERNELS)
    if (std::strcmp(isa, "avx2") == 0) return tables().has_avx2 ? &avx2::vec_ops() : nullptr;
    if (std::strcmp(isa, "avx512") == 0) return tables().has_avx512 ? &avx512::vec_ops() : nullptr;
#endif
    return nullptr;
}

const VecOps& vec_ops() {
    static const VecOps* const ops = [] {
        const VecOps* v = vec_ops_for_isa(isa_name());
        return v ? v : &ref::vec_ops();
    }();
    return *ops;
}

const RepackTraits* repack_traits_for_isa(const char* isa, GGMLType t) {
    if (std::strcmp(isa, "scalar") == 0) {
        static const RepackTraits q4_0 = {ref::repack_q4_0_r16, ref::gemm_q4_0_r16, ref::unpack_row_q4_0_r16};
        static const RepackTraits q8_0 = {ref::repack_q8_0_r16, ref::gemm_q8_0_r16, ref::unpack_row_q8_0_r16};
        return t == GGMLType::Q4_0 ? &q4_0 : t == GGMLType::Q8_0 ? &q8_0 : nullptr;
    }
#if defined(SLM_HAVE_X86_KERNELS)
    if (std::strcmp(isa, "avx512") == 0 && tables().has_avx512) {
        if (t == GGMLType::Q8_0_S24) return cpu_runs_avx512_vbmi2() ? avx512::repack_traits_q8_0_s24() : nullptr;
        return avx512::repack_traits(t);
    }
#endif
    return nullptr;
}

// Only the SIMD layouts are worth a repack; the scalar one exists to test them.
const RepackTraits* repack_traits(GGMLType t) {
    const char* isa = isa_name();
    if (std::strcmp(isa, "scalar") == 0) return nullptr;
    return repack_traits_for_isa(isa, t);
}

} // namespace slm::kernels
