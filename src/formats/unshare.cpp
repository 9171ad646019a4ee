// unshare.cpp - MobileLLM block-wise sharing written out for loaders without it (llama.cpp).
#include "slm/convert.h"
#include "slm/error.h"
#include "slm/gguf.h"

#include <string>
#include <vector>

namespace slm {

void convert_unshare(const std::string& in_gguf, const std::string& out_gguf) {
    GGUFFile f = GGUFFile::open(in_gguf);
    const std::string arch = f.get_str("general.architecture");
    const std::string key = arch + ".block_source";
    const GGUFValue* src = f.find(key);
    if (src == nullptr) fail("convert --unshare: %s: no key '%s': the layers share no weights", in_gguf.c_str(), key.c_str());
    const uint32_t n_layer = f.get_u32(arch + ".block_count");
    if (src->type != GGUFType::ARRAY || src->n != n_layer ||
        (src->elem_type != GGUFType::U32 && src->elem_type != GGUFType::I32))
        fail("convert --unshare: %s: key '%s' must be an array of block_count (%u) integers", in_gguf.c_str(),
             key.c_str(), n_layer);

    GGUFWriter w;
    w.copy_kv_from(f);
    w.remove(key);
    // Tensors in the file's order, a block's tensors repeated for every layer computing with it,
    // in layer order (the order a converter of the unshared model writes them).
    bool blocks_written = false;
    for (const GGUFTensorInfo& t : f.tensors()) {
        if (t.name.rfind("blk.", 0) != 0) {
            w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
            continue;
        }
        if (blocks_written) continue;
        blocks_written = true;
        for (uint32_t il = 0; il < n_layer; ++il) {
            const int64_t b = src->elem_int(il);
            const std::string from = "blk." + std::to_string(b) + ".";
            bool any = false;
            for (const GGUFTensorInfo& u : f.tensors()) {
                if (u.name.rfind(from, 0) != 0) continue;
                any = true;
                w.add_tensor("blk." + std::to_string(il) + "." + u.name.substr(from.size()), u.type, u.shape(), u.data,
                             u.nbytes);
            }
            if (!any)
                fail("convert --unshare: %s: layer %u uses block %lld (key '%s'), which has no tensors", in_gguf.c_str(),
                     il, static_cast<long long>(b), key.c_str());
        }
    }
    w.write(out_gguf);
}

} // namespace slm
