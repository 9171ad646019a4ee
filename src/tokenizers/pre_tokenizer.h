// tokenizers/pre_tokenizer.h - the BPE pre-tokenizers llama.cpp selects by tokenizer.ggml.pre:
// the name table (llama_vocab::impl::load), the regex lists (llm_tokenizer_bpe) and the splitter
// (unicode_regex_split), with PCRE2 as the regex engine.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace slm::tok {

// llama.cpp's LLAMA_VOCAB_PRE_TYPE_*.
enum class PreType {
    Default, Llama3, Jais2, DeepseekLlm, Deepseek3Llm, Spark25, Youtu, DeepseekCoder, Falcon, Mpt, Starcoder,
    Gpt2, Refact, CommandR, Stablelm2, Qwen2, Qwen35, Olmo, Dbrx, Smaug, Poro, Chatglm4, Viking, Jais, Tekken,
    Smollm, Codeshell, Bloom, Gpt3Finnish, Exaone, ExaoneMoe, Chameleon, Minerva, Gpt4o, MinimaxM2,
    GraniteEmbMulti, TinyAya, Superbpe, Trillion, GraniteDocling, Bailingmoe, SeedCoder, Hunyuan, HunyuanDense,
    HyV4, JoyaiLlm, KimiK2, Ufakzeka, Grok2, Afmoe, Laguna, SolarOpen, Mellum2, Gemma4, SarvamMoe, Minicpm5,
    Whitespace,
};

// What a tokenizer.ggml.pre name sets besides the pre-tokenizer itself.
struct PreConfig {
    PreType type = PreType::Default;
    bool ignore_merges = false;       // a word that is a whole token skips the merges
    bool clean_spaces = true;         // detokenize's clean_up_tokenization_spaces
    bool add_bos = false;
    bool escape_whitespaces = false;  // spaces -> U+2581 before BPE (SPM-style BPE)
    bool no_bos_token = false;        // the model has no BOS (chatglm)
};

// nullopt for a name llama.cpp does not know. "" and "default" both give Default.
std::optional<PreConfig> pre_config(std::string_view name);
// Every name pre_config() knows, in llama.cpp's table order.
std::vector<std::string> known_pre_names();

// The regexes of one pre-tokenizer, compiled once; split() is safe to call from many threads.
class PreTokenizer {
public:
    explicit PreTokenizer(PreType type);  // throws slm::Error if a regex does not compile
    ~PreTokenizer();
    PreTokenizer(PreTokenizer&&) noexcept;
    PreTokenizer& operator=(PreTokenizer&&) noexcept;

    // The words of `text`, in order, as unicode_regex_split returns them: invalid UTF-8 becomes
    // U+FFFD, and with byte_encode() every byte is mapped through GPT-2's bytes_to_unicode.
    std::vector<std::string> split(std::string_view text) const;
    bool byte_encode() const { return byte_encode_; }

    // The lengths in code points of the pieces split() returns (empty pieces included).
    std::vector<size_t> piece_lengths(std::string_view text) const;

    // The regexes a pre-tokenizer runs, in order, as llama.cpp lists them; "\\p{Han}+" and
    // "\\p{AFMoE_digits}" stand for its hand-written Kimi-K2 and AFMoE splitters.
    static std::vector<std::string> regex_list(PreType type);
    // One regex over the whole text (for tests): the lengths of the pieces.
    static std::vector<size_t> split_offsets(const std::string& regex, std::string_view text);

    struct Regex;

private:
    std::vector<std::unique_ptr<Regex>> regexes_;
    bool byte_encode_ = true;
};

} // namespace slm::tok
