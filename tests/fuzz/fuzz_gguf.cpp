// fuzz_gguf.cpp - libFuzzer target for the GGUF reader and writer.
//
// Any input must either parse or throw slm::Error; anything else (a crash, a sanitizer report,
// another exception type, a huge allocation) is a bug. A file that parses must survive every
// getter, have its tensor data inside the input, and re-serialize to a file that parses to the
// same keys and tensors; serializing that again must give the same bytes. Each tensor's first and
// last rows are dequantized against its type by the scalar reference kernels (any bytes are a
// valid block of any type). The tokenizer metadata goes through Vocab::from_gguf, as Model::load
// does, and the vocabulary it gives tokenizes and detokenizes a fixed text. (The architectures'
// tensor-shape checks are in tests/unit/attacks_test.cpp: the fuzz build leaves the models out.)
#include "kernels/ref/ref.h"
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/vocab.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

[[noreturn]] void bug(const char* what) {
    std::fprintf(stderr, "fuzz_gguf: %s\n", what);
    std::abort();
}

template <class F> void tolerate(F&& f) {
    try {
        f();
    } catch (const slm::Error&) {
    }
}

volatile uint64_t g_sink;  // keeps the touched bytes and values alive
void sink(uint64_t x) { g_sink = g_sink + x; }
void sink_f(double d) {  // by its bits: casting a negative or huge double to an integer is UB
    uint64_t b;
    std::memcpy(&b, &d, sizeof b);
    sink(b);
}

void exercise_getters(const slm::GGUFFile& f) {
    for (const auto& kv : f.kv()) {
        const std::string& key = kv.first;  // not a structured binding: clang 14 cannot capture those
        const slm::GGUFValue& v = kv.second;
        if (f.find(key) != &v) bug("find() does not return the first key");
        sink(v.to_string().size());  // must not throw for any value that parsed
        sink(v.to_string(1000000).size());
        tolerate([&] { sink(f.get_u32(key)); });
        tolerate([&] { sink(f.get_u32(key, 7)); });
        tolerate([&] { sink(static_cast<uint64_t>(f.get_int(key, 7))); });
        tolerate([&] { sink_f(f.get_f32(key)); });
        tolerate([&] { sink_f(f.get_f32(key, 1.0f)); });
        tolerate([&] { sink(f.get_bool(key, false)); });
        tolerate([&] { sink(f.get_str(key).size()); });
        tolerate([&] { sink(f.get_str(key, "x").size()); });
        tolerate([&] { sink(f.get_str_array(key).size()); });
        tolerate([&] { sink(f.get_f32_array(key).size()); });
        tolerate([&] { sink(f.get_i32_array(key).size()); });
        tolerate([&] { sink(v.as_uint("k")); });
        tolerate([&] { sink(static_cast<uint64_t>(v.as_int("k"))); });
        tolerate([&] { sink_f(v.as_float("k")); });
        tolerate([&] { sink(v.as_bool("k")); });
        uint32_t n_layer = v.type == slm::GGUFType::ARRAY && v.n < 4096 ? static_cast<uint32_t>(v.n) : 3;
        tolerate([&] { sink(f.get_per_layer_u32(key, n_layer, 1).size()); });
        tolerate([&] { sink(f.get_per_layer_u32(key, n_layer + 1, 1).size()); });
        if (v.type == slm::GGUFType::ARRAY) {
            uint64_t k = v.n < 64 ? v.n : 64;
            for (uint64_t i = 0; i < k; ++i) {
                tolerate([&] { sink(static_cast<uint64_t>(v.elem_int(i))); });
                tolerate([&] { sink_f(v.elem_float(i)); });
            }
            tolerate([&] { sink(static_cast<uint64_t>(v.elem_int(v.n))); });
        }
    }
    tolerate([&] { sink(f.get_u32("no.such.key")); });
}

void walk_tensors(const slm::GGUFFile& f, const uint8_t* data, size_t size) {
    for (const auto& t : f.tensors()) {
        if (f.find_tensor(t.name) != &t) bug("find_tensor() does not return the tensor");
        sink(static_cast<uint64_t>(t.nelements()) + static_cast<uint64_t>(t.nrows()) + t.shape().size() +
             t.shape_str().size());
        if (t.nbytes == 0) continue;
        if (t.data < data || t.data + t.nbytes > data + size) bug("tensor data outside the input");
        sink(t.data[0] + t.data[t.nbytes - 1]);
    }
}

using ToFloat = void (*)(const void*, float*, int64_t);

// The scalar reference dequantizers (the oracle every SIMD kernel is tested against).
ToFloat to_float(slm::GGMLType t) {
    namespace r = slm::kernels::ref;
    using T = slm::GGMLType;
    switch (t) {
        case T::F32: return r::f32_to_float;
        case T::F16: return r::f16_to_float;
        case T::BF16: return r::bf16_to_float;
        case T::Q4_0: return r::dequantize_row_q4_0;
        case T::Q4_1: return r::dequantize_row_q4_1;
        case T::Q5_0: return r::dequantize_row_q5_0;
        case T::Q5_1: return r::dequantize_row_q5_1;
        case T::Q8_0: return r::dequantize_row_q8_0;
        case T::Q2_K: return r::dequantize_row_q2_K;
        case T::Q3_K: return r::dequantize_row_q3_K;
        case T::Q4_K: return r::dequantize_row_q4_K;
        case T::Q5_K: return r::dequantize_row_q5_K;
        case T::Q6_K: return r::dequantize_row_q6_K;
        case T::IQ4_NL: return r::dequantize_row_iq4_nl;
        case T::IQ4_XS: return r::dequantize_row_iq4_xs;
        case T::TQ1_0: return r::dequantize_row_tq1_0;
        case T::TQ2_0: return r::dequantize_row_tq2_0;
        default: return nullptr;
    }
}

void dequantize_tensors(const slm::GGUFFile& f) {
    std::vector<float> row;
    std::vector<uint64_t> aligned;  // the kernels' contract (kernels.h): data aligned as its type, as Model::load ensures
    for (const auto& t : f.tensors()) {
        const ToFloat fn = to_float(t.type);
        const int64_t nr = t.nrows();
        if (!fn || t.nbytes == 0 || nr <= 0 || t.ne[0] <= 0 || t.ne[0] > (1 << 16)) continue;
        const size_t row_bytes = t.nbytes / static_cast<size_t>(nr);
        row.assign(static_cast<size_t>(t.ne[0]), 0.0f);
        aligned.assign((row_bytes + 7) / 8, 0);
        for (int64_t r : {int64_t(0), nr - 1}) {
            std::memcpy(aligned.data(), t.data + static_cast<size_t>(r) * row_bytes, row_bytes);
            fn(aligned.data(), row.data(), t.ne[0]);
            sink_f(row[0] + row.back());
        }
    }
}

// What Model::load does with the tokenizer metadata, short of mapping a file.
void load_vocab(const slm::GGUFFile& f) {
    tolerate([&] {
        const slm::Vocab v = slm::Vocab::from_gguf(f);
        const std::vector<int32_t> ids = v.tokenize("Hello w\xc3\xb6rld <s></s>\n  12345 \xf0\x9f\x98\x80", true, true);
        for (int32_t id : ids)
            if (id < 0 || id >= v.n_tokens()) bug("a token id outside the vocabulary");
        sink(v.detokenize(ids, false, true).size());
        for (int32_t id : ids) sink(v.token_to_piece(id, true).size());
    });
}

bool same_tensors(const slm::GGUFFile& a, const slm::GGUFFile& b) {
    if (a.tensors().size() != b.tensors().size()) return false;
    for (size_t i = 0; i < a.tensors().size(); ++i) {
        const auto& x = a.tensors()[i];
        const auto& y = b.tensors()[i];
        if (x.name != y.name || x.type != y.type || x.n_dims != y.n_dims || x.nbytes != y.nbytes) return false;
        for (int d = 0; d < 4; ++d)
            if (x.ne[d] != y.ne[d]) return false;
        if (x.nbytes && std::memcmp(x.data, y.data, x.nbytes) != 0) return false;
    }
    return true;
}

std::vector<uint8_t> rewrite(const slm::GGUFFile& f) {
    slm::GGUFWriter w(f.version());
    w.copy_kv_from(f);
    for (const auto& t : f.tensors()) w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
    return w.to_bytes();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    slm::GGUFFile f;
    try {
        f = slm::GGUFFile::parse(data, size, "fuzz.gguf");
    } catch (const slm::Error& e) {
        if (std::strstr(e.what(), "fuzz.gguf") == nullptr) bug("parse error does not name the file");
        return 0;
    }
    exercise_getters(f);
    walk_tensors(f, data, size);
    dequantize_tensors(f);
    load_vocab(f);

    // A file that parsed must be written back without complaint, and read back the same.
    std::vector<uint8_t> out, out2;
    try {
        out = rewrite(f);
    } catch (const slm::Error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        bug("the writer rejects a file the reader accepted");
    }
    try {
        slm::GGUFFile g = slm::GGUFFile::parse(out.data(), out.size(), "rewritten.gguf");
        if (g.version() != f.version() || g.alignment() != f.alignment()) bug("header changed in the rewrite");
        if (!(g.kv() == f.kv())) bug("metadata changed in the rewrite");
        if (!same_tensors(f, g)) bug("tensors changed in the rewrite");
        out2 = rewrite(g);
    } catch (const slm::Error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        bug("the rewritten file does not parse");
    }
    if (out2 != out) bug("writing is not idempotent");
    return 0;
}
