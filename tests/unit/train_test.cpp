// The training loop (src/train): data packing and the held-out split, the schedule, AdamW,
// clipping, accumulation, exact resume, overfitting a paragraph, checkpoints, the loss curve,
// configs, QAT export against the inference engine, errors, and `slm train` end to end.
#include "train/trainer_internal.h"

#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/model.h"
#include "slm/quantize.h"
#include "slm/train.h"
#include "slm/vocab.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

namespace slm {
namespace {

namespace fs = std::filesystem;
using train_impl::AdamW;
using train_impl::TrainData;

std::string tokenizer_path() { return test::model_path("stories260K/stories260K.gguf"); }

Vocab stories_vocab() {
    const GGUFFile f = GGUFFile::open(tokenizer_path());
    return Vocab::from_gguf(f);
}

// 2 layers x 64, 4 query heads over 2 K/V heads, the stories260K tokenizer (512 tokens).
TrainArch tiny_arch() {
    TrainArch a;
    a.name = "train-test-tiny";
    a.n_ctx = 64;
    a.n_embd = 64;
    a.n_layer = 2;
    a.n_head = 4;
    a.n_head_kv = 2;
    a.n_ff = 128;
    a.tokenizer = tokenizer_path();
    return a;
}

// One layer whose every row length is a multiple of 256, so Q2_K and TQ1_0/TQ2_0 apply
// everywhere without a fallback type.
TrainArch k_arch() {
    TrainArch a = tiny_arch();
    a.name = "train-test-k";
    a.n_embd = 256;
    a.n_layer = 1;
    a.n_head = 4;
    a.n_head_kv = 4;
    a.n_ff = 512;
    return a;
}

const char* kParagraph =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine. One day, she "
    "saw a big red ball in the park. She ran to the ball and kicked it high into the sky. Lily laughed and laughed.";

std::string write_text(const std::string& name, const std::string& text) {
    const std::string path = test::temp_dir() + "/" + name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
}

std::string stories_text(size_t max_bytes) {
    const std::string all = test::read_text(test::source_dir() + "/data/calib/tinystories_train_1k.txt");
    return all.substr(0, std::min(max_bytes, all.size()));
}

TrainOptions quiet_options() {
    TrainOptions o;
    o.log = [](const std::string&) {};
    o.n_threads = 2;
    return o;
}

std::vector<float> weights_of(const TrainModel& m) {
    std::vector<float> w;
    for (const TrainParam& p : m.params()) w.insert(w.end(), p.w, p.w + p.n);
    return w;
}

// ---- schedule, optimizer, clipping (no model needed) -------------------------------------------

TEST(TrainSchedule, WarmupThenCosineToTheFloor) {
    TrainOptions o;
    o.lr = 1e-3f;
    o.lr_min_ratio = 0.1f;
    o.warmup = 10;
    o.steps = 110;
    EXPECT_FLOAT_EQ(train_impl::lr_at(o, 0), 1e-4f);        // (0 + 1) / 10 of the peak
    EXPECT_FLOAT_EQ(train_impl::lr_at(o, 4), 5e-4f);
    EXPECT_FLOAT_EQ(train_impl::lr_at(o, 9), 1e-3f);        // the warm-up ends at the peak
    EXPECT_FLOAT_EQ(train_impl::lr_at(o, 10), 1e-3f);       // the cosine starts there
    // The cosine runs over steps 10..109 (99 intervals); step 60 is 50 of them in.
    const double mid = 1e-4 + 0.5 * (1 + std::cos(M_PI * 50.0 / 99.0)) * (1e-3 - 1e-4);
    EXPECT_NEAR(train_impl::lr_at(o, 60), mid, 1e-9);
    EXPECT_FLOAT_EQ(train_impl::lr_at(o, 109), 1e-4f);      // the last step reaches lr * lr_min_ratio
    for (int64_t s = 10; s < 109; ++s) EXPECT_GE(train_impl::lr_at(o, s), train_impl::lr_at(o, s + 1));
    o.warmup = 0;
    EXPECT_FLOAT_EQ(train_impl::lr_at(o, 0), 1e-3f);
}

struct FakeParams {
    std::vector<std::vector<float>> w, g;
    std::vector<TrainParam> p;
    FakeParams() {
        w = {{0.5f, -1.0f, 2.0f, 0.0f, 1.0f, -0.25f}, {1.0f, 2.0f, 3.0f}, {4.0f, 5.0f}};
        g = {{0.1f, -0.2f, 0.3f, -0.4f, 0.0f, 1e-3f}, {-0.5f, 0.5f, 2.0f}, {1.0f, 1.0f}};
        p.resize(3);
        p[0] = {"blk.0.attn_q.weight", {3, 2}, w[0].data(), g[0].data(), 6, true};
        p[1] = {"blk.0.attn_norm.weight", {3}, w[1].data(), g[1].data(), 3, true};
        p[2] = {"frozen.weight", {2}, w[2].data(), nullptr, 2, false};
    }
};

TEST(TrainOptimizer, AdamWFirstStepBiasCorrectedDecoupledDecayOnMatricesOnly) {
    FakeParams f;
    const std::vector<std::vector<float>> w0 = f.w, g0 = f.g;
    AdamW opt(f.p);
    EXPECT_TRUE(opt.m[2].empty());  // frozen: no state
    TrainOptions o;
    o.lr = 0.01f;
    o.weight_decay = 0.1f;
    o.eps = 1e-8f;
    opt.step(o, o.lr, 1);
    // After one step with bias correction, mhat = g and vhat = g^2: the update is lr g / (|g| + eps).
    for (int i = 0; i < 2; ++i)
        for (size_t k = 0; k < f.w[i].size(); ++k) {
            const double g = g0[i][k];
            const double decay = i == 0 ? 0.01 * 0.1 * w0[i][k] : 0.0;  // only the 2-D weight decays
            const double want = w0[i][k] - 0.01 * g / (std::fabs(g) + 1e-8) - decay;
            EXPECT_NEAR(f.w[i][k], want, 2e-7) << i << " " << k;
        }
    EXPECT_EQ(f.w[2], w0[2]);  // frozen untouched
    // Second step, same gradient: m and v follow the exponential averages.
    opt.step(o, o.lr, 2);
    const double b1 = o.beta1, b2 = o.beta2, g = g0[1][2];
    const double m = (1 - b1) * g * (1 + b1), v = (1 - b2) * g * g * (1 + b2);
    EXPECT_NEAR(opt.m[1][2], m, 1e-6);
    EXPECT_NEAR(opt.v[1][2], v, 1e-6);
}

TEST(TrainOptimizer, ClipScalesToTheGlobalNormAndKeepsDirection) {
    FakeParams f;
    AdamW opt(f.p);
    double want = 0;
    for (int i = 0; i < 2; ++i)
        for (float x : f.g[i]) want += static_cast<double>(x) * x;
    want = std::sqrt(want);  // the frozen parameter has no gradient and does not count
    EXPECT_NEAR(opt.grad_norm(), want, 1e-6);
    const std::vector<std::vector<float>> g0 = f.g;
    EXPECT_NEAR(opt.clip(10.0f), want, 1e-6);  // below the limit: unchanged
    EXPECT_EQ(f.g, g0);
    EXPECT_NEAR(opt.clip(1.0f), want, 1e-6);
    EXPECT_NEAR(opt.grad_norm(), 1.0, 1e-6);
    for (int i = 0; i < 2; ++i)
        for (size_t k = 0; k < f.g[i].size(); ++k) EXPECT_NEAR(f.g[i][k], g0[i][k] / want, 1e-6);
    const std::vector<std::vector<float>> g1 = f.g;
    opt.clip(0.0f);  // 0 = off
    EXPECT_EQ(f.g, g1);
}

// ---- data ------------------------------------------------------------------------------------

TEST(TrainData, DocumentSplitRules) {
    const std::string text = "a b\nc\n\n\nd\r\n<|endoftext|>\ne\n  \nf\n";
    EXPECT_EQ(train_impl::split_documents(text, "blank", "t"), (std::vector<std::string>{"a b\nc", "d", "e", "f"}));
    EXPECT_EQ(train_impl::split_documents(text, "line", "t"), (std::vector<std::string>{"a b", "c", "d", "e", "f"}));
    EXPECT_EQ(train_impl::split_documents(text, "none", "t"), (std::vector<std::string>{"a b\nc\n\n\nd", "e\n  \nf"}));
    EXPECT_THROW(train_impl::split_documents(text, "paragraph", "t"), Error);
}

TEST(TrainData, TextPackedWithEosAndBosFirstHeldOutTailNeverTrained) {
    const Vocab vocab = stories_vocab();
    ASSERT_NE(vocab.eos(), TOKEN_NULL);
    ASSERT_TRUE(vocab.add_bos());
    const std::vector<std::string> docs = {"Lily saw a big dog.", "The dog was happy.\nIt ran away.",
                                           "Tom had a red ball. He liked to play with it every day."};
    const std::string path = write_text("docs.txt", docs[0] + "\n\n" + docs[1] + "\n\n\n" + docs[2] + "\n");
    TrainOptions o;
    o.seq_len = 8;
    o.val_fraction = 0.3f;
    const TrainData d = train_impl::load_train_data(path, &vocab, 512, o);
    std::vector<int32_t> want;
    for (const std::string& doc : docs) {
        const auto ids = vocab.tokenize(doc, false, false);
        want.insert(want.end(), ids.begin(), ids.end());
        want.push_back(vocab.eos());
    }
    EXPECT_EQ(d.tokens, want);
    EXPECT_EQ(d.n_docs, 3u);
    EXPECT_EQ(d.bos, vocab.bos());
    EXPECT_EQ(d.n_train, want.size() - static_cast<size_t>(std::llround(0.3 * want.size())));
    // Every training window stays in [0, n_train); validation windows in [n_train, end).
    for (int64_t step = 0; step < 200; ++step)
        for (int i = 0; i < 4; ++i) {
            const size_t s = d.train_start(7, step, i);
            EXPECT_LE(s + d.window(), d.n_train);
        }
    const auto vs = d.val_starts(100);
    ASSERT_FALSE(vs.empty());
    for (size_t s : vs) {
        EXPECT_GE(s, d.n_train);
        EXPECT_LE(s + d.window(), d.tokens.size());
    }
    // A sequence: BOS, then the stream; targets are the stream shifted by one.
    std::vector<int32_t> in(8), tg(8);
    d.fill(3, in.data(), tg.data());
    EXPECT_EQ(in[0], vocab.bos());
    for (int t = 1; t < 8; ++t) EXPECT_EQ(in[t], want[3 + t - 1]);
    for (int t = 0; t < 8; ++t) EXPECT_EQ(tg[t], want[3 + t]);
    // The same (seed, step) draws the same windows; micro-batches continue the step's sequence.
    std::vector<int32_t> a_in, a_tg, b_in, b_tg, c_in, c_tg;
    d.train_batch(7, 5, 0, 4, a_in, a_tg);
    d.train_batch(7, 5, 0, 2, b_in, b_tg);
    d.train_batch(7, 5, 1, 2, c_in, c_tg);
    b_in.insert(b_in.end(), c_in.begin(), c_in.end());
    EXPECT_EQ(a_in, b_in);
}

TEST(TrainData, TokenFilesAsTheyAre) {
    TrainOptions o;
    o.seq_len = 4;
    o.val_fraction = 0;
    const std::string ids = write_text("ids.txt", "1 2 3\n4 5 6 7 8\n");
    const TrainData d = train_impl::load_train_data(ids, nullptr, 512, o);
    EXPECT_EQ(d.tokens, (std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8}));
    EXPECT_EQ(d.bos, TOKEN_NULL);
    std::vector<int32_t> in(4), tg(4);
    d.fill(2, in.data(), tg.data());
    EXPECT_EQ(in, (std::vector<int32_t>{3, 4, 5, 6}));
    EXPECT_EQ(tg, (std::vector<int32_t>{4, 5, 6, 7}));
    // llm.c shard: 256 int32 header (magic, version 1, count), then uint16 ids.
    std::vector<uint8_t> shard(1024 + 2 * 6, 0);
    const int32_t hdr[3] = {20240520, 1, 6};
    std::memcpy(shard.data(), hdr, sizeof hdr);
    const uint16_t toks[6] = {10, 11, 12, 13, 14, 511};
    std::memcpy(shard.data() + 1024, toks, sizeof toks);
    const std::string bin = test::temp_dir() + "/shard.bin";
    test::write_file(bin, shard);
    EXPECT_EQ(train_impl::load_train_data(bin, nullptr, 512, o).tokens, (std::vector<int32_t>{10, 11, 12, 13, 14, 511}));
    // An id outside the vocabulary names the file.
    try {
        train_impl::load_train_data(bin, nullptr, 500, o);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("shard.bin"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("511"), std::string::npos) << e.what();
    }
}

TEST(TrainData, BadDataFilesNameTheFile) {
    const Vocab vocab = stories_vocab();
    TrainOptions o;
    o.seq_len = 16;
    o.val_fraction = 0;
    const auto expect_error = [&](const std::string& path, const char* what) {
        try {
            train_impl::load_train_data(path, &vocab, 512, o);
            FAIL() << path;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(fs::path(path).filename().string()), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
        }
    };
    expect_error(test::temp_dir() + "/missing.txt", "cannot open");
    expect_error(write_text("latin1.txt", "caf\xe9 au lait, a long enough text to fill a sequence or two"), "UTF-8");
    expect_error(write_text("short.txt", "Hi."), "fewer than one sequence");
    expect_error(write_text("empty.txt", "\n\n"), "no tokens");
    o.val_fraction = 0.01f;
    expect_error(write_text("smallval.txt", kParagraph), "held-out");
}

// ---- the loop --------------------------------------------------------------------------------

TEST(Train, OverfitsOneParagraph) {
#ifdef SLM_SANITIZED
    GTEST_SKIP() << "200 steps: too slow under the sanitizers";
#endif
    const std::string data = write_text("paragraph.txt", kParagraph);
    // One sequence is the whole paragraph (BOS, its tokens; targets its tokens and EOS): every
    // target is then predictable from its context and the loss can go to ~0. (Shorter random
    // windows start mid-text, and their first target cannot be known.)
    const int n = static_cast<int>(stories_vocab().tokenize(kParagraph, false, false).size()) + 1;
    TrainArch a = tiny_arch();
    a.n_ctx = 128;
    ASSERT_LE(n, 128);
    TrainModel m(a, 1);
    TrainOptions o = quiet_options();
    o.data = data;
    o.steps = 200;
    o.batch = 1;  // every window is the same one
    o.seq_len = n;
    o.lr = 3e-3f;
    o.warmup = 10;
    o.weight_decay = 0;
    o.val_fraction = 0;
    const TrainResult r = train(m, o);
    ASSERT_EQ(r.curve.size(), 200u);
    EXPECT_GT(r.curve.front().loss, 5.0f);  // ~ln(512) at the start
    EXPECT_LT(r.final_loss, 0.05f);
    EXPECT_EQ(r.tokens_seen, 200 * n);
    EXPECT_TRUE(std::isnan(r.final_val_loss));
}

TEST(Train, AccumulatedMicroBatchesEqualOneBigBatch) {
    const std::string data = write_text("acc.txt", stories_text(20000));
    TrainOptions o = quiet_options();
    o.data = data;
    o.steps = 3;
    o.seq_len = 16;
    o.warmup = 1;
    o.val_fraction = 0;
    TrainModel a(tiny_arch(), 3), b(tiny_arch(), 3);
    o.batch = 4;
    o.grad_accum = 1;
    const TrainResult ra = train(a, o);
    o.batch = 2;
    o.grad_accum = 2;
    const TrainResult rb = train(b, o);
    for (int s = 0; s < 3; ++s) EXPECT_NEAR(ra.curve[s].loss, rb.curve[s].loss, 1e-4f) << s;
    const auto wa = weights_of(a), wb = weights_of(b);
    ASSERT_EQ(wa.size(), wb.size());
    double max_diff = 0;
    for (size_t i = 0; i < wa.size(); ++i) max_diff = std::max(max_diff, static_cast<double>(std::fabs(wa[i] - wb[i])));
    // Three Adam steps of ~lr each: float rounding of the summed gradients moves weights by far less.
    EXPECT_LT(max_diff, 1e-5) << "accumulation differs from the big batch";
    EXPECT_EQ(ra.tokens_seen, rb.tokens_seen);
}

TEST(Train, ResumeIsBitExactAndCheckpointsRotate) {
    const std::string data = write_text("resume.txt", stories_text(30000));
    TrainOptions o = quiet_options();
    o.data = data;
    o.steps = 8;
    o.batch = 2;
    o.seq_len = 16;
    o.warmup = 2;
    o.val_every = 2;
    o.val_batches = 2;
    o.val_fraction = 0.1f;
    o.grad_accum = 2;

    // Uninterrupted.
    o.checkpoint_dir = test::temp_dir() + "/full.ckpt";
    TrainModel full(tiny_arch(), 5);
    const TrainResult rf = train(full, o);

    // Interrupted after step 4 (checkpoint every 4 steps; the loss hook throws in step 5)...
    o.checkpoint_dir = test::temp_dir() + "/part.ckpt";
    o.ckpt_every = 4;
    TrainModel part(tiny_arch(), 5);
    int calls = 0;
    TrainOptions oi = o;
    oi.batch_loss = [&](TrainModel& m, std::span<const int32_t> t, std::span<const int32_t> y, int B, int T, float s) {
        if (++calls > 4 * o.grad_accum) throw std::runtime_error("interrupted");
        return m.forward_backward(t, y, B, T, s);
    };
    EXPECT_THROW(train(part, oi), std::runtime_error);
    EXPECT_EQ(train_impl::newest_checkpoint(o.checkpoint_dir), train_impl::checkpoint_path(o.checkpoint_dir, 4));

    // ...and resumed by a fresh model with another initialization: the checkpoint decides.
    TrainModel resumed(tiny_arch(), 99);
    const TrainResult rr = train(resumed, o);
    EXPECT_EQ(weights_of(resumed), weights_of(full)) << "resumed weights differ from the uninterrupted run";
    ASSERT_EQ(rr.curve.size(), rf.curve.size());
    for (size_t i = 0; i < rf.curve.size(); ++i) {
        EXPECT_EQ(rr.curve[i].step, rf.curve[i].step);
        EXPECT_EQ(rr.curve[i].loss, rf.curve[i].loss) << i;
        EXPECT_EQ(std::isnan(rr.curve[i].val_loss), std::isnan(rf.curve[i].val_loss)) << i;
        if (!std::isnan(rf.curve[i].val_loss)) EXPECT_EQ(rr.curve[i].val_loss, rf.curve[i].val_loss) << i;
    }
    EXPECT_EQ(rr.final_val_loss, rf.final_val_loss);
    EXPECT_EQ(rr.tokens_seen, rf.tokens_seen);
    // Checkpoints at 4 and 8 remain (the two newest); the SVG is beside them.
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(o.checkpoint_dir)) names.insert(e.path().filename().string());
    EXPECT_EQ(names, (std::set<std::string>{"ckpt-00000004.gguf", "ckpt-00000008.gguf", "loss.svg"}));
    EXPECT_EQ(rr.svg_path, o.checkpoint_dir + "/loss.svg");
    // Resuming a finished run trains nothing and changes nothing.
    const auto before = weights_of(resumed);
    train(resumed, o);
    EXPECT_EQ(weights_of(resumed), before);
    // Changed options are allowed but noted.
    std::string notes;
    TrainOptions more = o;
    more.steps = 9;
    more.lr = 2e-3f;
    more.log = [&](const std::string& line) { notes += line + "\n"; };
    train(resumed, more);
    EXPECT_NE(notes.find("options changed since the checkpoint: lr, steps"), std::string::npos) << notes;
}

TEST(Train, LoraTrainsOnlyTheAdaptersAndWritesThem) {
    TrainModel m(tiny_arch(), 1);
    LoraOptions lo;
    lo.rank = 4;
    m.add_lora(lo);
    std::vector<std::vector<float>> base;
    for (const TrainParam& p : m.params())
        if (!p.g) base.emplace_back(p.w, p.w + p.n);
    ASSERT_FALSE(base.empty());
    TrainOptions o = quiet_options();
    o.data = write_text("lora.txt", stories_text(8000));
    o.val_fraction = 0;
    o.seq_len = 16;
    o.batch = 2;
    o.steps = 4;
    o.ckpt_every = 2;
    o.out = test::temp_dir() + "/lora.gguf";
    train(m, o);
    size_t k = 0;
    bool adapters_moved = false;
    for (const TrainParam& p : m.params()) {
        if (!p.g) {
            EXPECT_EQ(std::vector<float>(p.w, p.w + p.n), base[k++]) << p.name << " is frozen";
        } else if (p.name.find("lora_b") != std::string::npos) {
            for (size_t i = 0; i < p.n; ++i) adapters_moved = adapters_moved || p.w[i] != 0.0f;  // B starts at 0
        }
    }
    EXPECT_TRUE(adapters_moved);
    TrainModel back(tiny_arch(), 1);
    back.load_lora(o.out);
    for (const TrainParam& p : m.params()) {
        if (!p.g) continue;
        const TrainParam* q = back.find(p.name);
        ASSERT_NE(q, nullptr) << p.name;
        EXPECT_EQ(std::vector<float>(q->w, q->w + q->n), std::vector<float>(p.w, p.w + p.n)) << p.name;
    }
    // The checkpoint holds optimizer state for the adapters only, and resumes into a LoRA model.
    const GGUFFile ck = GGUFFile::open(train_impl::checkpoint_path(o.out + ".ckpt", 4));
    for (const GGUFTensorInfo& t : ck.tensors())
        if (t.name.rfind("adam.", 0) == 0) EXPECT_NE(t.name.find(".lora_"), std::string::npos) << t.name;
}

TEST(Train, BadOptionsAreRefusedBeforeTraining) {
    TrainModel m(tiny_arch(), 1);
    TrainOptions o = quiet_options();
    o.data = write_text("opts.txt", stories_text(4000));
    o.val_fraction = 0;
    o.seq_len = 16;
    o.steps = 1;
    const auto expect_error = [&](TrainOptions bad, const char* what) {
        try {
            train(m, bad);
            FAIL() << what;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
        }
    };
    TrainOptions b = o;
    b.seq_len = 65;  // n_ctx is 64
    expect_error(b, "seq_len");
    b = o;
    b.lr = 0;
    expect_error(b, "lr");
    b = o;
    b.qat_type = GGMLType::Q4_0;
    b.qat_distill = true;  // without a distillation loss
    expect_error(b, "qat_distill");
    b = o;
    b.doc_split = "pages";
    expect_error(b, "doc_split");
    b = o;
    b.qat_type = GGMLType::BF16;
    expect_error(b, "not a quantized type");
}

TEST(Train, CheckpointErrorsNameTheFile) {
    const std::string data = write_text("ck.txt", stories_text(8000));
    TrainOptions o = quiet_options();
    o.data = data;
    o.steps = 2;
    o.batch = 2;
    o.seq_len = 16;
    o.val_fraction = 0;
    o.checkpoint_dir = test::temp_dir() + "/ck.ckpt";
    TrainModel m(tiny_arch(), 1);
    train(m, o);
    const std::string ck = train_impl::checkpoint_path(o.checkpoint_dir, 2);
    ASSERT_TRUE(fs::exists(ck));
    // Another model's shapes.
    TrainArch other = tiny_arch();
    other.n_ff = 96;
    TrainModel wrong(other, 1);
    try {
        train(wrong, o);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("ckpt-00000002.gguf"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("ffn"), std::string::npos) << e.what();
    }
    // Truncated.
    fs::resize_file(ck, fs::file_size(ck) / 2);
    TrainModel m2(tiny_arch(), 1);
    try {
        train(m2, o);
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("ckpt-00000002.gguf"), std::string::npos) << e.what();
    }
    // --no-resume ignores it.
    o.resume = false;
    EXPECT_NO_THROW(train(m2, o));
}

// ---- QAT -------------------------------------------------------------------------------------

// Trains a few QAT steps, exports, and checks the exported model in slm's inference engine gives
// the fake-quantized training forward's logits. The engine also quantizes activations (Q8_0 or
// Q8_K) in its products, which the training forward does not: hence a tolerance rather than
// equality, 2% of the logits' spread (measured: 0.24% for Q4_0, 0.4% for Q2_K, 0.33% for
// TQ1_0/TQ2_0), and the greedy token agrees at all but at most one position.
void qat_round_trip(const TrainArch& arch, GGMLType type, const std::string& tag) {
    const std::string data = write_text("qat_" + tag + ".txt", stories_text(20000));
    TrainModel m(arch, 2);
    TrainOptions o = quiet_options();
    o.data = data;
    o.steps = 4;
    o.batch = 2;
    o.seq_len = 32;
    o.val_fraction = 0;
    o.qat_type = type;
    o.out = test::temp_dir() + "/qat_" + tag + ".gguf";
    train(m, o);

    const GGUFFile f = GGUFFile::open(o.out);
    for (const TrainParam& p : m.params()) {
        const GGUFTensorInfo& t = f.tensor(p.name);
        if (p.is_matrix()) EXPECT_EQ(t.type, quant_fallback_type(type, p.ne[0])) << p.name;
        else EXPECT_EQ(t.type, GGMLType::F32) << p.name;
    }

    const std::vector<int32_t> ids = stories_vocab().tokenize("Once upon a time, there was a little dog.", true, false);
    const int T = static_cast<int>(ids.size());
    train_impl::FakeQuant fq(m, type, 2);
    for (const auto& [name, t] : fq.types()) EXPECT_EQ(f.tensor(name).type, t) << name;
    fq.apply();
    const float* lt = m.forward(ids, 1, T);
    const uint32_t V = m.arch().n_vocab;
    std::vector<float> train_logits(lt, lt + static_cast<size_t>(T) * V);
    fq.restore();

    auto model = Model::load(o.out);
    SessionOptions so;
    so.kv_type = GGMLType::F32;
    so.n_threads = 2;
    Session s(model, so);
    s.eval(ids, true);
    const auto li = s.logits();
    ASSERT_EQ(li.size(), train_logits.size());
    double max_diff = 0, lo = 1e30, hi = -1e30;
    int argmax_agree = 0;
    for (int t = 0; t < T; ++t) {
        size_t a = 0, b = 0;
        for (uint32_t v = 0; v < V; ++v) {
            const size_t k = static_cast<size_t>(t) * V + v;
            max_diff = std::max(max_diff, static_cast<double>(std::fabs(li[k] - train_logits[k])));
            lo = std::min(lo, static_cast<double>(train_logits[k]));
            hi = std::max(hi, static_cast<double>(train_logits[k]));
            if (li[k] > li[static_cast<size_t>(t) * V + a]) a = v;
            if (train_logits[k] > train_logits[static_cast<size_t>(t) * V + b]) b = v;
        }
        argmax_agree += a == b;
    }
    EXPECT_LT(max_diff, 0.02 * (hi - lo)) << tag << ": max |diff| " << max_diff << ", logit range " << (hi - lo);
    EXPECT_GE(argmax_agree, T - 1) << tag;

    // The float model with the same weights differs from both by much more than the tolerance:
    // the comparison above really sees the quantization.
    const float* lf = m.forward(ids, 1, T);
    double float_diff = 0;
    for (size_t k = 0; k < train_logits.size(); ++k)
        float_diff = std::max(float_diff, static_cast<double>(std::fabs(lf[k] - train_logits[k])));
    EXPECT_GT(float_diff, max_diff) << tag;
}

TEST(TrainQat, Q4_0ExportMatchesFakeQuantForward) { qat_round_trip(tiny_arch(), GGMLType::Q4_0, "q4_0"); }
#ifdef SLM_SANITIZED
#define SKIP_IF_SANITIZED() GTEST_SKIP() << "256-wide model: too slow under the sanitizers"
#else
#define SKIP_IF_SANITIZED() (void)0
#endif
TEST(TrainQat, Q2_KExportMatchesFakeQuantForward) {
    SKIP_IF_SANITIZED();
    qat_round_trip(k_arch(), GGMLType::Q2_K, "q2_k");
}
TEST(TrainQat, TQ1_0ExportMatchesFakeQuantForward) {
    SKIP_IF_SANITIZED();
    qat_round_trip(k_arch(), GGMLType::TQ1_0, "tq1_0");
}
TEST(TrainQat, TQ2_0ExportMatchesFakeQuantForward) {
    SKIP_IF_SANITIZED();
    qat_round_trip(k_arch(), GGMLType::TQ2_0, "tq2_0");
}

TEST(TrainQat, RowsNotAMultipleOfTheBlockFallBackAsLlamaCpp) {
    TrainModel m(tiny_arch(), 1);  // rows of 64 and 128: Q2_K (block 256) falls back to IQ4_NL
    train_impl::FakeQuant fq(m, GGMLType::Q2_K, 1);
    ASSERT_FALSE(fq.types().empty());
    for (const auto& [name, t] : fq.types()) EXPECT_EQ(t, GGMLType::IQ4_NL) << name;
    EXPECT_THROW(train_impl::FakeQuant(m, GGMLType::F16, 1), Error);
}

TEST(TrainQat, FakeQuantIsTheQuantizerRoundTripAndRestoreIsExact) {
    TrainModel m(tiny_arch(), 1);
    const auto before = weights_of(m);
    train_impl::FakeQuant fq(m, GGMLType::Q4_0, 1);
    fq.apply();
    TrainParam* q = m.find("blk.0.attn_q.weight");
    ASSERT_NE(q, nullptr);
    // Q4_0 keeps at most 16 levels per block of 32.
    std::set<float> levels(q->w, q->w + 32);
    EXPECT_LE(levels.size(), 16u);
    fq.restore();
    EXPECT_EQ(weights_of(m), before);
}

// ---- curve, configs ------------------------------------------------------------------------------

TEST(TrainSvg, AxesTicksLabelsAndBothCurves) {
    std::vector<TrainPoint> c;
    for (int s = 1; s <= 300; ++s)
        c.push_back({s, s * 100, 6.0f - 3.0f * s / 300.0f, s % 100 == 0 ? 6.2f - 3.0f * s / 300.0f : NAN, 1e-3f});
    const std::string svg = train_impl::loss_curve_svg(c, "run <1>");
    EXPECT_EQ(svg.rfind("<svg", 0), 0u);
    EXPECT_NE(svg.find("</svg>"), std::string::npos);
    EXPECT_NE(svg.find("run &lt;1&gt;"), std::string::npos);
    EXPECT_NE(svg.find(">step<"), std::string::npos);
    EXPECT_NE(svg.find("loss (cross-entropy"), std::string::npos);
    EXPECT_NE(svg.find(">300<"), std::string::npos);  // x ticks reach the last step
    EXPECT_NE(svg.find(">3.0<"), std::string::npos);  // y ticks cover the range
    EXPECT_NE(svg.find(">6.0<"), std::string::npos);
    size_t polylines = 0, circles = 0;
    for (size_t p = svg.find("<polyline"); p != std::string::npos; p = svg.find("<polyline", p + 1)) ++polylines;
    for (size_t p = svg.find("<circle"); p != std::string::npos; p = svg.find("<circle", p + 1)) ++circles;
    EXPECT_EQ(polylines, 2u);
    EXPECT_EQ(circles, 3u);  // validation at steps 100, 200, 300
}

TEST(TrainConfig, PresetArchAndTrainOverrides) {
    const TrainConfig c = parse_train_config(
        R"({"preset": "tiny", "arch": {"n_layer": 3, "tied_embeddings": false, "tokenizer": "tok.gguf"},
            "train": {"steps": 20, "lr": 0.002, "qat_type": "TQ2_0", "out_type": "f16", "seed": 7, "resume": false}})",
        "cfg.json");
    EXPECT_EQ(c.preset, "tiny");
    const TrainArch tiny = train_preset("tiny");
    EXPECT_EQ(c.arch.n_embd, tiny.n_embd);
    EXPECT_EQ(c.arch.n_layer, 3u);
    EXPECT_FALSE(c.arch.tied_embeddings);
    EXPECT_EQ(c.arch.tokenizer, "tok.gguf");
    EXPECT_EQ(c.options.steps, 20);
    EXPECT_FLOAT_EQ(c.options.lr, 0.002f);
    ASSERT_TRUE(c.options.qat_type.has_value());
    EXPECT_EQ(*c.options.qat_type, GGMLType::TQ2_0);
    EXPECT_EQ(c.options.out_type, GGMLType::F16);
    EXPECT_EQ(c.options.seed, 7u);
    EXPECT_FALSE(c.options.resume);
    // Round trip through the JSON a checkpoint stores.
    const TrainConfig back = parse_train_config(train_config_json(c.arch, c.options), "back");
    EXPECT_EQ(back.arch.n_layer, 3u);
    EXPECT_EQ(back.options.steps, 20);
    EXPECT_EQ(*back.options.qat_type, GGMLType::TQ2_0);
}

TEST(TrainConfig, BadConfigsNameTheFileAndKey) {
    const auto expect_error = [](const std::string& json, const std::vector<std::string>& parts) {
        const std::string path = write_text("bad.json", json);
        try {
            load_train_config(path);
            FAIL() << json;
        } catch (const Error& e) {
            EXPECT_NE(std::string(e.what()).find("bad.json"), std::string::npos) << e.what();
            for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
        }
    };
    expect_error(R"({"train": {"steps": 10,}})", {"JSON"});
    expect_error(R"({"train": {"steps": 1e999}})", {"JSON"});  // a number JSON cannot hold (found by fuzzing)
    expect_error(R"({"train": {"stpes": 10}})", {"train.stpes"});
    expect_error(R"({"arch": {"n_embed": 10}})", {"arch.n_embed"});
    expect_error(R"({"model": {}})", {"'model'"});
    expect_error(R"({"train": {"steps": "ten"}})", {"train.steps", "integer"});
    expect_error(R"({"train": {"batch": 3000000000}})", {"train.batch"});
    expect_error(R"({"arch": {"n_layer": -1}})", {"arch.n_layer"});
    expect_error(R"({"train": {"lr": true}})", {"train.lr", "number"});
    expect_error(R"({"train": {"qat_type": "Q9_9"}})", {"train.qat_type", "Q9_9"});
    expect_error(R"({"preset": "no-such-preset"})", {"preset"});
    expect_error(R"([1, 2])", {"object"});
    try {
        load_train_config(test::temp_dir() + "/nothing.json");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("nothing.json"), std::string::npos) << e.what();
    }
}

TEST(TrainConfig, ShippedConfigsParse) {
    int n = 0;
    for (const auto& e : fs::directory_iterator(test::source_dir() + "/configs/train")) {
        if (e.path().extension() != ".json") continue;
        const TrainConfig c = load_train_config(e.path().string());
        TrainArch a = c.arch;
        if (!c.preset.empty() || c.arch.n_vocab) {
            if (a.tokenizer.empty() || !fs::exists(a.tokenizer)) a.tokenizer = tokenizer_path();
            EXPECT_NO_THROW(a.validate(e.path().string())) << e.path();
        }
        ++n;
    }
    EXPECT_GE(n, 4);
}

// ---- the CLI -----------------------------------------------------------------------------------

TEST(TrainCli, TrainsEndToEndFromAConfig) {
    const std::string dir = test::temp_dir();
    const std::string data = write_text("cli.txt", stories_text(20000));
    const std::string cfg = write_text("cli.json", R"({"preset": "tiny", "arch": {"tokenizer": ")" + tokenizer_path() +
                                                       R"(", "n_ctx": 64}, "train": {"steps": 3, "batch": 2,
                                                       "seq_len": 16, "val_fraction": 0.1, "val_batches": 1}})");
    const std::string out = dir + "/cli.gguf";
    const auto r = test::run_cli({"train", "--config", cfg, "--data", data, "-o", out, "--steps", "4", "--lr", "0.002",
                                  "-t", "2", "--log-every", "1"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("final loss"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("validation loss"), std::string::npos) << r.out;
    EXPECT_NE(r.err.find("step 4/4"), std::string::npos) << r.err;  // --steps overrode the config's 3
    EXPECT_NE(r.err.find("tok/s"), std::string::npos) << r.err;
    EXPECT_TRUE(fs::exists(out + ".ckpt/loss.svg"));
    EXPECT_TRUE(fs::exists(out + ".ckpt/ckpt-00000004.gguf"));
    auto model = Model::load(out);
    EXPECT_EQ(model->hparams().n_layer, train_preset("tiny").n_layer);

    // A rerun resumes from the finished checkpoint; --no-resume starts over.
    const auto again = test::run_cli({"train", "--config", cfg, "--data", data, "-o", out, "--steps", "4"});
    ASSERT_EQ(again.exit_code, 0) << again.err;
    EXPECT_NE(again.err.find("resumed"), std::string::npos) << again.err;

    // QAT from the trained model (--init): text tokenized with the loaded model's own tokenizer,
    // the output written in Q4_0 and loadable.
    const std::string q = dir + "/cli_q4_0.gguf";
    const auto qat = test::run_cli({"train", "--init", out, "--data", data, "-o", q, "--qat", "q4_0", "--steps", "2",
                                    "--batch", "2", "--seq-len", "16", "--val-fraction", "0", "-t", "2"});
    ASSERT_EQ(qat.exit_code, 0) << qat.err;
    EXPECT_NE(qat.err.find("QAT"), std::string::npos) << qat.err;
    const GGUFFile qf = GGUFFile::open(q);
    EXPECT_EQ(qf.tensor("blk.0.attn_q.weight").type, GGMLType::Q4_0);
    EXPECT_NO_THROW(Model::load(q));

    const auto bad = test::run_cli({"train", "--config", cfg, "--data", dir + "/nope.txt", "-o", out, "--no-resume"});
    EXPECT_NE(bad.exit_code, 0);
    EXPECT_NE(bad.err.find("nope.txt"), std::string::npos) << bad.err;
    const auto no_model = test::run_cli({"train", "--data", data});
    EXPECT_NE(no_model.exit_code, 0);
    EXPECT_NE(no_model.err.find("--config"), std::string::npos) << no_model.err;
}

} // namespace
} // namespace slm
