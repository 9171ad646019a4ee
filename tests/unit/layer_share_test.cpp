// MobileLLM block-wise weight sharing: llama.block_source maps layers to stored blocks.
//
// A model with sharing must compute exactly what the same model with every layer's tensors
// written out computes (convert_unshare), while holding each stored block once.
#include "models/arch.h"
#include "slm/convert.h"
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/model.h"
#include "slm/synth.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string>
#include <vector>

using namespace slm;

namespace {

SynthConfig shared_config(GGMLType type) {
    SynthConfig c;
    c.n_embd = 128;
    c.n_layer = 6;
    c.n_head = 4;
    c.n_head_kv = 2;
    c.n_ff = 256;
    c.n_ctx_train = 128;
    c.tied_embeddings = true;
    c.type = type;
    c.pure = true;
    c.layer_share = 2;
    c.tokenizer = test::model_path("stories260K/stories260K.gguf");
    return c;
}

std::vector<float> all_logits(const std::string& path, const std::vector<int32_t>& toks) {
    auto m = Model::load(path);
    SessionOptions so;
    so.n_ctx = 64;
    so.kv_type = GGMLType::F32;
    so.n_threads = 2;
    Session s(m, so);
    s.eval(toks, true);
    auto l = s.logits();
    return {l.begin(), l.end()};
}

// Rewrites `in` with block_source replaced by `src` (or removed when empty).
void with_block_source(const std::string& in, const std::string& out, const GGUFValue* src) {
    GGUFFile f = GGUFFile::open(in);
    GGUFWriter w;
    w.copy_kv_from(f);
    if (src)
        w.set("llama.block_source", *src);
    else
        w.remove("llama.block_source");
    for (const auto& t : f.tensors()) w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
    w.write(out);
}

TEST(LayerShare, SharedEqualsUnsharedAndHoldsEachBlockOnce) {
    for (GGMLType type : {GGMLType::F32, GGMLType::Q4_0, GGMLType::Q8_0}) {
        SCOPED_TRACE(type_name(type));
        const std::string dir = test::temp_dir();
        const std::string shared = dir + "/shared.gguf", plain = dir + "/plain.gguf";
        synthesize(shared_config(type), shared);
        convert_unshare(shared, plain);

        GGUFFile fs = GGUFFile::open(shared), fp = GGUFFile::open(plain);
        EXPECT_TRUE(fs.has("llama.block_source"));
        EXPECT_FALSE(fp.has("llama.block_source"));
        EXPECT_TRUE(fs.find_tensor("blk.2.attn_q.weight") != nullptr);
        EXPECT_TRUE(fs.find_tensor("blk.3.attn_q.weight") == nullptr);  // 3 stored blocks for 6 layers
        ASSERT_TRUE(fp.find_tensor("blk.5.ffn_down.weight") != nullptr);
        // Layer 5 of the plain file holds the bytes of stored block 2.
        const GGUFTensorInfo& a = fs.tensor("blk.2.ffn_down.weight");
        const GGUFTensorInfo& b = fp.tensor("blk.5.ffn_down.weight");
        ASSERT_EQ(a.nbytes, b.nbytes);
        EXPECT_EQ(0, std::memcmp(a.data, b.data, a.nbytes));

        auto ms = Model::load(shared);
        auto mp = Model::load(plain);
        EXPECT_EQ(ms->hparams().n_layer, 6u);
        // Each stored block's tensors once: the shared model's tensors are distinct and half of
        // the plain model's block tensors.
        std::set<const void*> data;
        size_t n_block = 0;
        for (const ModelTensor* t : ms->arch().tensors()) {
            EXPECT_TRUE(data.insert(t->data).second) << t->name << " listed twice";
            n_block += t->name.rfind("blk.", 0) == 0;
        }
        size_t n_block_plain = 0;
        for (const ModelTensor* t : mp->arch().tensors()) n_block_plain += t->name.rfind("blk.", 0) == 0;
        EXPECT_EQ(2 * n_block, n_block_plain);
        EXPECT_LT(ms->weight_bytes(), mp->weight_bytes());

        const std::vector<int32_t> toks{1, 403, 407, 261, 378, 300, 12, 99, 4};
        const auto ls = all_logits(shared, toks), lp = all_logits(plain, toks);
        ASSERT_EQ(ls.size(), lp.size());
        EXPECT_EQ(0, std::memcmp(ls.data(), lp.data(), ls.size() * sizeof(float)));
        // And sharing matters: the same stored blocks run once each (no block_source: a 3-layer
        // reading of 6) would not load, and dropping the key makes the file invalid.
        const std::string nokey = dir + "/nokey.gguf";
        with_block_source(shared, nokey, nullptr);
        EXPECT_THROW(Model::load(nokey), Error);
    }
}

TEST(LayerShare, BadBlockSourceIsAClearError) {
    const std::string dir = test::temp_dir();
    const std::string shared = dir + "/shared.gguf";
    synthesize(shared_config(GGMLType::F32), shared);
    struct Bad {
        GGUFValue v;
        const char* what;
    };
    const std::vector<Bad> bad = {
        {GGUFValue::u32_array({0, 0, 1, 1, 2}), "array of block_count"},           // too short
        {GGUFValue::u32_array({0, 0, 2, 2, 1, 1}), "the next new one"},            // skips block 1
        {GGUFValue::u32_array({0, 0, 1, 1, 2, 7}), "the next new one"},            // past the blocks
        {GGUFValue::i32_array({0, -1, 1, 1, 2, 2}), "the next new one"},           // negative
        {GGUFValue::string("0,0,1,1,2,2"), "array of block_count"},                // not an array
        {GGUFValue::u32_array({0, 1, 2, 3, 4, 5}), "not found"},                   // blocks 3..5 absent
    };
    for (const Bad& b : bad) {
        const std::string p = dir + "/bad.gguf";
        with_block_source(shared, p, &b.v);
        try {
            Model::load(p);
            ADD_FAILURE() << "loaded with block_source " << b.v.to_string();
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(b.what), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("bad.gguf"), std::string::npos) << e.what();
        }
    }
    // convert_unshare refuses a file without sharing.
    const std::string plain = dir + "/plain.gguf";
    convert_unshare(shared, plain);
    EXPECT_THROW(convert_unshare(plain, dir + "/again.gguf"), Error);
}

TEST(LayerShare, CliSynthAndUnshare) {
    const std::string dir = test::temp_dir();
    const std::string shared = dir + "/cli_shared.gguf", plain = dir + "/cli_plain.gguf";
    auto r = test::run_cli({"synth", "--n-embd", "64", "--n-layer", "4", "--n-head", "2", "--n-head-kv", "1", "--n-ff",
                            "128", "--tokenizer", test::model_path("stories260K/stories260K.gguf"), "--type", "f32",
                            "--layer-share", "2", "-o", shared});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = test::run_cli({"info", shared});
    EXPECT_NE(r.out.find("block sharing: 2 stored blocks for 4 layers"), std::string::npos) << r.out;
    r = test::run_cli({"convert", "--unshare", shared, "-o", plain});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_FALSE(GGUFFile::open(plain).has("llama.block_source"));
    const std::vector<int32_t> toks{1, 403, 407, 261};
    const auto a = all_logits(shared, toks), b = all_logits(plain, toks);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float)));
    r = test::run_cli({"convert", "--unshare", plain, "-o", dir + "/x.gguf"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("share no weights"), std::string::npos) << r.err;
    // Sharing is a llama key: other architectures refuse it.
    r = test::run_cli({"synth", "--arch", "gemma", "--n-embd", "64", "--n-layer", "4", "--n-head", "2", "--n-head-kv",
                       "1", "--n-ff", "128", "--tokenizer", test::model_path("stories260K/stories260K.gguf"),
                       "--layer-share", "2", "-o", dir + "/g.gguf"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("llama architecture only"), std::string::npos) << r.err;
}

} // namespace
