#include "slm/types.h"

#include <cctype>
#include <cstdio>

namespace slm {

// Block layouts from ggml (ggml-common.h): sizes count every field of the block struct.
static const TypeInfo kTypes[] = {
    /* 0 F32     */ {"F32", 1, 4},
    /* 1 F16     */ {"F16", 1, 2},
    /* 2 Q4_0    */ {"Q4_0", 32, 2 + 16},
    /* 3 Q4_1    */ {"Q4_1", 32, 2 + 2 + 16},
    /* 4         */ {nullptr, 0, 0},
    /* 5         */ {nullptr, 0, 0},
    /* 6 Q5_0    */ {"Q5_0", 32, 2 + 4 + 16},
    /* 7 Q5_1    */ {"Q5_1", 32, 2 + 2 + 4 + 16},
    /* 8 Q8_0    */ {"Q8_0", 32, 2 + 32},
    /* 9 Q8_1    */ {"Q8_1", 32, 2 + 2 + 32},
    /* 10 Q2_K   */ {"Q2_K", 256, 16 + 64 + 2 + 2},
    /* 11 Q3_K   */ {"Q3_K", 256, 32 + 64 + 12 + 2},
    /* 12 Q4_K   */ {"Q4_K", 256, 2 + 2 + 12 + 128},
    /* 13 Q5_K   */ {"Q5_K", 256, 2 + 2 + 12 + 32 + 128},
    /* 14 Q6_K   */ {"Q6_K", 256, 128 + 64 + 16 + 2},
    /* 15 Q8_K   */ {"Q8_K", 256, 4 + 256 + 32},
    /* 16 IQ2_XXS*/ {"IQ2_XXS", 256, 2 + 64},
    /* 17 IQ2_XS */ {"IQ2_XS", 256, 2 + 64 + 8},
    /* 18 IQ3_XXS*/ {"IQ3_XXS", 256, 2 + 96},
    /* 19 IQ1_S  */ {"IQ1_S", 256, 2 + 32 + 16},
    /* 20 IQ4_NL */ {"IQ4_NL", 32, 2 + 16},
    /* 21 IQ3_S  */ {"IQ3_S", 256, 2 + 64 + 32 + 8 + 4},
    /* 22 IQ2_S  */ {"IQ2_S", 256, 2 + 64 + 8 + 8},
    /* 23 IQ4_XS */ {"IQ4_XS", 256, 2 + 2 + 4 + 128},
    /* 24 I8     */ {"I8", 1, 1},
    /* 25 I16    */ {"I16", 1, 2},
    /* 26 I32    */ {"I32", 1, 4},
    /* 27 I64    */ {"I64", 1, 8},
    /* 28 F64    */ {"F64", 1, 8},
    /* 29 IQ1_M  */ {"IQ1_M", 256, 32 + 16 + 8},
    /* 30 BF16   */ {"BF16", 1, 2},
    /* 31..33    */ {nullptr, 0, 0}, {nullptr, 0, 0}, {nullptr, 0, 0},
    /* 34 TQ1_0  */ {"TQ1_0", 256, 2 + 48 + 4},
    /* 35 TQ2_0  */ {"TQ2_0", 256, 2 + 64},
    /* 36..38    */ {nullptr, 0, 0}, {nullptr, 0, 0}, {nullptr, 0, 0},
    /* 39 MXFP4  */ {"MXFP4", 32, 1 + 16},
};

// slm's private types, from id kSlmTypeBase on (docs/sparse-format.md).
static const TypeInfo kSlmTypes[] = {
    /* 1024 Q8_0_S24 */ {"Q8_0_S24", 32, 2 + 4 + 16},
};
constexpr uint32_t kNumSlmTypes = sizeof(kSlmTypes) / sizeof(kSlmTypes[0]);

TypeInfo type_info(uint32_t type) {
    if (type >= kSlmTypeBase && type - kSlmTypeBase < kNumSlmTypes) return kSlmTypes[type - kSlmTypeBase];
    if (type >= sizeof(kTypes) / sizeof(kTypes[0])) return {nullptr, 0, 0};
    return kTypes[type];
}

const char* type_name(GGMLType t) {
    TypeInfo ti = type_info(t);
    if (ti.name) return ti.name;
    static thread_local char buf[32];
    std::snprintf(buf, sizeof buf, "type<%u>", static_cast<unsigned>(t));
    return buf;
}

bool type_from_name(const std::string& name, GGMLType* out) {
    std::string up;
    for (char c : name) up += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    for (uint32_t i = 0; i < sizeof(kTypes) / sizeof(kTypes[0]); ++i) {
        if (kTypes[i].name && up == kTypes[i].name) {
            *out = static_cast<GGMLType>(i);
            return true;
        }
    }
    for (uint32_t i = 0; i < kNumSlmTypes; ++i) {
        if (up == kSlmTypes[i].name) {
            *out = static_cast<GGMLType>(kSlmTypeBase + i);
            return true;
        }
    }
    return false;
}

} // namespace slm
