// commands.h - one function per `slm` subcommand; each registers its flags and its callback.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace slm::cli {

void add_run(CLI::App& app);       // slm run: generate text
void add_info(CLI::App& app);      // slm info: hyper-parameters, tokenizer, tensors
void add_tokenize(CLI::App& app);  // slm tokenize: text -> token ids as JSON
void add_convert(CLI::App& app);   // slm convert: other formats -> GGUF
void add_synth(CLI::App& app);     // slm synth: random-weight models of real shapes
void add_bench(CLI::App& app);     // slm bench: speed, time to first token, bandwidth roofline
void add_template(CLI::App& app);  // slm template: render a conversation with the chat template
void add_chat(CLI::App& app);      // slm chat: interactive multi-turn chat
void add_eval(CLI::App& app);      // slm eval: perplexity, KL divergence, benchmark tasks (cmd_eval.cpp)
void add_quantize(CLI::App& app);  // slm quantize: as llama-quantize, plus GPTQ / AWQ (cmd_quantize.cpp)
void add_calibrate(CLI::App& app); // slm calibrate: importance matrix (cmd_quantize.cpp)
void add_prune(CLI::App& app);     // slm prune: magnitude / Wanda / SparseGPT, N:M, structured (cmd_prune.cpp)
void add_train(CLI::App& app);     // slm train: train a Llama-family model, QAT (cmd_train.cpp)
void add_tokenizer(CLI::App& app); // slm tokenizer train: BPE / SPM tokenizer from text (cmd_tokenizer.cpp)
void add_data(CLI::App& app);      // slm data: filter, dedup, decontaminate, mix, synth (cmd_data.cpp)
void add_distill(CLI::App& app);   // slm distill: teacher -> student (fkl/rkl/jsd/tvd, on-policy) (cmd_distill.cpp)
void add_finetune(CLI::App& app);  // slm finetune --lora: adapters on a frozen base (cmd_finetune.cpp)
void add_lora(CLI::App& app);      // slm lora merge: base + adapter -> one model (cmd_finetune.cpp)
void add_serve(CLI::App& app);     // slm serve: OpenAI-compatible HTTP server (cmd_serve.cpp)
// slm limits, plus the global --limit option and SLM_LIMITS (cmd_limits.cpp). Call first.
void add_limits(CLI::App& app);
// The `slm eval` subcommands, each in its own file, registered on the `eval` app by add_eval.
void add_eval_perplexity(CLI::App& eval);  // slm eval perplexity (cmd_eval_perplexity.cpp)
void add_eval_tasks(CLI::App& eval);       // slm eval hellaswag|arc|mmlu|winogrande|gsm8k|custom (cmd_eval_tasks.cpp)
void add_eval_passkey(CLI::App& eval);     // slm eval passkey (cmd_eval_passkey.cpp)

// The model used when -m is not given: $SLM_MODEL, else the bundled stories260K.
std::string default_model();
// A repository-relative data file: `rel` itself if it exists (or is absolute), else found next to
// the binary's build tree or in the source tree; "" if nowhere.
std::string find_repo_file(const std::string& rel);
// Reads a whole text file (for -f), with an error naming the file.
std::string read_text_file(const std::string& path);
// Exit status the callbacks set (0 unless a command failed without throwing).
int exit_code();
void set_exit_code(int code);

} // namespace slm::cli
