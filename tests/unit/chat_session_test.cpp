// ChatSession: multi-turn chat that keeps the KV cache between turns, and `slm chat`.
#include "slm/chat_session.h"
#include "slm/error.h"
#include "slm/gguf.h"
#include "slm/generate.h"
#include "slm/model.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <fcntl.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

using namespace slm;

namespace {

const char* const kChatML =
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

std::shared_ptr<const Model> stories() { return Model::load(test::model_path("stories260K/stories260K.gguf")); }

ChatOptions greedy(const char* tmpl, uint32_t n_ctx = 512, int n_predict = 24) {
    ChatOptions o;
    o.chat_template = tmpl;
    o.gen.n_predict = n_predict;
    o.gen.sampling.temp = 0;
    o.session.n_ctx = n_ctx;
    o.session.kv_type = GGMLType::F32;
    o.session.n_threads = 1;
    return o;
}

// What a fresh session generates (greedy) for the tokens of `text`.
std::string fresh_reply(const std::shared_ptr<const Model>& m, const std::string& text, const ChatOptions& o) {
    SessionOptions so = o.session;
    Session s(m, so);
    auto toks = m->vocab().tokenize(text, true, true);
    return generate(s, toks, o.gen).text;
}

// The rendering a turn's reply followed: every message but the last (the reply), with the
// generation prompt.
std::string render_before_reply(const char* tmpl, const std::vector<ChatMessage>& msgs) {
    ChatTemplateOptions to;
    to.bos_token = "<s>";
    to.eos_token = "</s>";
    to.add_generation_prompt = true;
    return ChatTemplate::parse(tmpl).render(std::vector<ChatMessage>(msgs.begin(), msgs.end() - 1), to);
}

TEST(ChatSession, LaterTurnsReuseTheCacheAndAnswerAsAFreshSession) {
    auto m = stories();
    ChatOptions o = greedy(kChatML);
    o.system = "Tell a story.";
    ChatSession chat(m, o);
    GenerateResult r1 = chat.send("Once upon a time");
    EXPECT_EQ(chat.reused_last(), 0u);
    EXPECT_GT(r1.stats.n_gen, 0u);
    const uint32_t after1 = chat.n_past();
    ASSERT_EQ(chat.messages().size(), 3u);
    EXPECT_EQ(chat.messages()[2].role, "assistant");
    EXPECT_EQ(chat.messages()[2].content, r1.text);

    GenerateResult r2 = chat.send("Lily went to the park.");
    // Everything evaluated for turn 1 (but a reply that the template re-renders differently)
    // is reused: the new prompt tokens are only the new turn's.
    EXPECT_GT(chat.reused_last(), size_t(after1) * 3 / 4);
    EXPECT_LE(chat.reused_last(), after1);
    EXPECT_EQ(r2.stats.n_prompt + chat.reused_last(), chat.n_past() - (r2.stats.n_gen - 1));

    // The same reply a fresh session gives for the whole rendered conversation.
    EXPECT_EQ(r2.text, fresh_reply(m, render_before_reply(kChatML, chat.messages()), o));
}

TEST(ChatSession, TemplateThatRewritesHistoryCutsTheCacheBack) {
    // Renders earlier assistant turns trimmed and upper-cased: the cached reply tokens no longer
    // match and must be cut back to the common prefix.
    const char* tmpl =
        "{% for m in messages %}<|im_start|>{{ m.role }}\n"
        "{% if m.role == 'assistant' %}{{ m.content | trim | upper }}{% else %}{{ m.content }}{% endif %}"
        "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    auto m = stories();
    ChatOptions o = greedy(tmpl);
    ChatSession chat(m, o);
    chat.send("The cat sat.");
    const uint32_t after1 = chat.n_past();
    GenerateResult r2 = chat.send("Then it ran.");
    EXPECT_LT(chat.reused_last(), after1);
    EXPECT_GT(chat.reused_last(), 0u);
    // Equal to a fresh session over the full rendering of turn 2.
    EXPECT_EQ(r2.text, fresh_reply(m, render_before_reply(tmpl, chat.messages()), o));
}

TEST(ChatSession, FullContextIsAnErrorThatLeavesTheConversationAndResetRecovers) {
    auto m = stories();
    ChatSession chat(m, greedy(kChatML, 96, 30));
    bool full = false;
    for (int i = 0; i < 10 && !full; ++i) {
        const size_t n_before = chat.messages().size();
        try {
            GenerateResult r = chat.send("One day, a little bird flew to a tree.");
            if (r.stop_reason == "context") EXPECT_EQ(chat.n_past(), chat.n_ctx());
        } catch (const Error& e) {
            full = true;
            EXPECT_NE(std::string(e.what()).find("no longer fits the context"), std::string::npos) << e.what();
            EXPECT_NE(std::string(e.what()).find("reset"), std::string::npos) << e.what();
            EXPECT_EQ(chat.messages().size(), n_before);  // the refused turn is not added
        }
    }
    EXPECT_TRUE(full);
    chat.reset();
    EXPECT_EQ(chat.n_past(), 0u);
    EXPECT_TRUE(chat.messages().empty());
    EXPECT_NO_THROW(chat.send("Hi"));
}

TEST(ChatSession, StoppedReplyIsKeptAndTheChatGoesOn) {
    auto m = stories();
    ChatSession chat(m, greedy(kChatML, 512, 40));
    int pieces = 0;
    GenerateResult r = chat.send("Once upon a time", [&](std::string_view) { return ++pieces < 3; });
    EXPECT_EQ(r.stop_reason, "callback");
    EXPECT_EQ(chat.messages().back().content, r.text);
    GenerateResult r2 = chat.send("And then?");
    EXPECT_GT(chat.reused_last(), 0u);
    EXPECT_NE(r2.stop_reason, "callback");
}

TEST(ChatSession, SaveWritesTheConversationAsJson) {
    auto m = stories();
    ChatOptions o = greedy(kChatML);
    o.system = "Be kind.";
    ChatSession chat(m, o);
    chat.send("Hello");
    const std::string path = test::temp_dir() + "/conv.json";
    chat.save(path);
    auto j = nlohmann::json::parse(test::read_text(path));
    ASSERT_EQ(j["messages"].size(), 3u);
    EXPECT_EQ(j["messages"][0]["role"], "system");
    EXPECT_EQ(j["messages"][0]["content"], "Be kind.");
    EXPECT_EQ(j["messages"][1]["content"], "Hello");
    EXPECT_EQ(j["messages"][2]["role"], "assistant");
    EXPECT_THROW(chat.save(test::temp_dir() + "/no/such/dir/conv.json"), Error);
}

TEST(ChatSession, ModelWithoutTemplateGetsChatMLAndBadTemplateIsAnError) {
    auto m = stories();
    ChatOptions o = greedy("");
    ChatSession chat(m, o);
    EXPECT_TRUE(chat.template_is_fallback());
    chat.send("Hi");
    EXPECT_EQ(chat.render(false).rfind("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", 0), 0u);
    EXPECT_THROW(ChatSession(m, greedy("{% for x in %}")), Error);
}

TEST(ChatCli, TurnsCommandsAndSave) {
    const std::string save = test::temp_dir() + "/cli_conv.json";
    auto r = test::run_cli({"chat", "-q", "--temp", "0", "-n", "12", "-c", "512", "--system", "Tell a story."},
                           "Once upon a time\n/nonsense\nLily smiled.\n/save " + save + "\n/reset\nHi\n/exit\n");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("(unknown command /nonsense"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("(saved 5 messages to " + save + ")"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("(conversation reset)"), std::string::npos) << r.out;
    EXPECT_NE(r.err.find("using ChatML"), std::string::npos) << r.err;
    auto j = nlohmann::json::parse(test::read_text(save));
    EXPECT_EQ(j["messages"].size(), 5u);
    // End of input ends the chat like /exit.
    auto r2 = test::run_cli({"chat", "-q", "--temp", "0", "-n", "4"}, "Hi\n");
    EXPECT_EQ(r2.exit_code, 0) << r2.err;
    // A bad template file is an error with exit code 1.
    const std::string bad = test::temp_dir() + "/bad.jinja";
    test::write_file(bad, {'{', '%', ' ', 'i', 'f', ' ', '%', '}'});
    auto r3 = test::run_cli({"chat", "--chat-template", bad}, "Hi\n");
    EXPECT_EQ(r3.exit_code, 1);
    EXPECT_NE(r3.err.find("bad.jinja"), std::string::npos) << r3.err;
}

TEST(ChatCli, CtrlCAtThePromptDoesNotEndTheProgram) {
    signal(SIGPIPE, SIG_IGN);  // a child that died must fail the test, not end it
    const std::string dir = test::temp_dir();
    const std::string out_path = dir + "/sig.out", err_path = dir + "/sig.err";
    int in[2];
    ASSERT_EQ(pipe(in), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        int o = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(in[0], 0);
        dup2(o, 1);
        dup2(e, 2);
        ::close(in[1]);
        std::string exe = test::cli_path();
        execl(exe.c_str(), exe.c_str(), "chat", "--temp", "0", "-n", "4", static_cast<char*>(nullptr));
        _exit(127);
    }
    ::close(in[0]);
    // The banner on stderr says the handler is in place.
    bool ready = false;
    for (int i = 0; i < 600 && !ready; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        ready = test::read_text(err_path).find("slm chat:") != std::string::npos;
    }
    ASSERT_TRUE(ready) << test::read_text(err_path);
    kill(pid, SIGINT);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const std::string rest = "Hi\n/exit\n";
    EXPECT_EQ(write(in[1], rest.data(), rest.size()), ssize_t(rest.size()));
    ::close(in[1]);
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    EXPECT_EQ(WEXITSTATUS(status), 0);
    const std::string out = test::read_text(out_path);
    EXPECT_NE(out.find("(/exit to quit)"), std::string::npos) << out;
}

TEST(ChatCli, TemplateOfAHuggingFaceFolderIsItsTokenizerConfigs) {
    // A GGUF with a chat template, written out as a Hugging Face folder: `slm template` and
    // `slm chat` read the folder's template (tokenizer_config.json) as the GGUF's.
    const std::string dir = test::temp_dir();
    const std::string gguf = dir + "/with_tmpl.gguf", hf = dir + "/hf_folder";
    {
        GGUFFile f = GGUFFile::open(test::model_path("stories260K/stories260K.gguf"));
        GGUFWriter w;
        w.copy_kv_from(f);
        w.set("tokenizer.chat_template", GGUFValue::string(kChatML));
        for (const auto& t : f.tensors()) w.add_tensor(t.name, t.type, t.shape(), t.data, t.nbytes);
        w.write(gguf);
    }
    auto r = test::run_cli({"convert", "--to", "hf", gguf, "-o", hf});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string msgs = dir + "/m.json";
    const std::string js = R"([{"role": "user", "content": "Hi"}])";
    test::write_file(msgs, std::vector<uint8_t>(js.begin(), js.end()));
    auto a = test::run_cli({"template", "-m", gguf, "--messages", msgs, "--add-generation-prompt"});
    auto b = test::run_cli({"template", "-m", hf, "--messages", msgs, "--add-generation-prompt"});
    ASSERT_EQ(a.exit_code, 0) << a.err;
    ASSERT_EQ(b.exit_code, 0) << b.err;
    EXPECT_EQ(a.out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    EXPECT_EQ(a.out, b.out);
    auto c = test::run_cli({"chat", "-m", hf, "--temp", "0", "-n", "4"}, "Hi\n/exit\n");
    EXPECT_EQ(c.exit_code, 0) << c.err;
    EXPECT_EQ(c.err.find("using ChatML"), std::string::npos) << c.err;  // the folder's own template
}

} // namespace
