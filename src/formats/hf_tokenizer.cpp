// formats/hf_tokenizer.cpp - see hf_tokenizer.h.
#include "formats/hf_tokenizer.h"

#include "formats/json_util.h"
#include "slm/error.h"
#include "tokenizers/vocab_impl.h"

#include <cstdint>
#include <limits>

namespace slm::hf {

namespace {

// A special id as llama.cpp's writer stores it: UINT32.
void set_id(GGUFWriter& w, const char* key, const std::optional<int64_t>& id) {
    if (!id) return;
    if (*id < 0 || *id > static_cast<int64_t>(std::numeric_limits<uint32_t>::max()))
        fail("gguf vocab: %s = %lld does not fit UINT32", key, static_cast<long long>(*id));
    w.set(key, GGUFValue::u32(static_cast<uint32_t>(*id)));
}

} // namespace

void add_vocab_kv(const VocabData& v, const std::string& chat_template, GGUFWriter& w) {
    // Keys in the order llama.cpp's converter writes them: the vocab, then SpecialVocab's merges,
    // ids, add_* flags and chat template.
    w.set("tokenizer.ggml.model", GGUFValue::string(v.model));
    if (!v.pre.empty()) w.set("tokenizer.ggml.pre", GGUFValue::string(v.pre));
    w.set("tokenizer.ggml.tokens", GGUFValue::str_array(v.tokens));
    if (!v.scores.empty()) w.set("tokenizer.ggml.scores", GGUFValue::f32_array(v.scores));
    if (!v.token_types.empty()) w.set("tokenizer.ggml.token_type", GGUFValue::i32_array(v.token_types));
    if (!v.merges.empty()) w.set("tokenizer.ggml.merges", GGUFValue::str_array(v.merges));
    set_id(w, "tokenizer.ggml.bos_token_id", v.bos);
    set_id(w, "tokenizer.ggml.eos_token_id", v.eos);
    set_id(w, "tokenizer.ggml.unknown_token_id", v.unk);
    set_id(w, "tokenizer.ggml.seperator_token_id", v.sep);
    set_id(w, "tokenizer.ggml.padding_token_id", v.pad);
    set_id(w, "tokenizer.ggml.mask_token_id", v.mask);
    set_id(w, "tokenizer.ggml.eot_token_id", v.eot);
    set_id(w, "tokenizer.ggml.eom_token_id", v.eom);
    set_id(w, "tokenizer.ggml.fim_pre_token_id", v.fim_pre);
    set_id(w, "tokenizer.ggml.fim_suf_token_id", v.fim_suf);
    set_id(w, "tokenizer.ggml.fim_mid_token_id", v.fim_mid);
    set_id(w, "tokenizer.ggml.fim_pad_token_id", v.fim_pad);
    set_id(w, "tokenizer.ggml.fim_rep_token_id", v.fim_rep);
    set_id(w, "tokenizer.ggml.fim_sep_token_id", v.fim_sep);
    if (v.add_bos) w.set("tokenizer.ggml.add_bos_token", GGUFValue::boolean(*v.add_bos));
    if (v.add_eos) w.set("tokenizer.ggml.add_eos_token", GGUFValue::boolean(*v.add_eos));
    if (v.add_space_prefix) w.set("tokenizer.ggml.add_space_prefix", GGUFValue::boolean(*v.add_space_prefix));
    if (!chat_template.empty()) w.set("tokenizer.chat_template", GGUFValue::string(chat_template));
}

VocabData vocab_data_from_gguf(const GGUFFile& f) { return tok::read_vocab_data(f); }

std::string chat_template_from_gguf(const GGUFFile& f) { return f.get_str("tokenizer.chat_template", ""); }

HFTokenizer parse_hf_tokenizer(std::string_view tokenizer_json, std::string_view tokenizer_config_json,
                               std::string_view config_json, const std::string& name) {
    fail("hf tokenizer: %s: reading tokenizer.json is not implemented yet", name.c_str());
}

HFTokenizer read_hf_tokenizer(const std::string& dir) {
    fail("hf tokenizer: %s: reading tokenizer.json is not implemented yet", dir.c_str());
}

void write_hf_tokenizer(const VocabData& v, const std::string& chat_template, const std::string& dir) {
    fail("hf tokenizer: %s: writing tokenizer.json is not implemented yet", dir.c_str());
}

} // namespace slm::hf
