// chat/parser.cpp - a recursive-descent parser with jinja2.parser's grammar and precedence:
//   condexpr: or ("if" or ("else" condexpr)?)*
//   or: and ("or" and)*      and: not ("and" not)*      not: "not" not | compare
//   compare: math1 (("=="|"!="|"<"|"<="|">"|">="|"in"|"not" "in") math1)*
//   math1: concat (("+"|"-") concat)*      concat: math2 ("~" math2)*
//   math2: pow (("*"|"/"|"//"|"%") pow)*   pow: unary ("**" unary)*   (left-associative)
//   unary: ("-"|"+") unary | primary postfix* (filter | test | call)*
#include "chat/ast.h"
#include "chat/lexer.h"

#include <functional>

namespace slm::chat {

namespace {

constexpr int MAX_PARSE_DEPTH = 100;  // nesting of expressions and blocks

class Parser {
public:
    Parser(Program& prog, std::vector<Token> toks) : prog_(prog), t_(std::move(toks)) {}

    Body parse_template() {
        Body body = subparse({});
        if (cur().type != Tok::Eof) fail("unexpected " + describe(cur()));
        return body;
    }

private:
    Program& prog_;
    std::vector<Token> t_;
    size_t pos_ = 0;
    int depth_ = 0;
    int soft_ = 0;        // inside an if or an inline if: unknown filters fail only when run
    int loop_depth_ = 0;  // for break / continue
    std::vector<std::string> tag_stack_;
    std::vector<std::vector<std::string>> end_stack_;

    struct Guard {
        Parser& p;
        explicit Guard(Parser& pp) : p(pp) {
            if (++p.depth_ > MAX_PARSE_DEPTH) p.fail("template nested too deeply (more than " + std::to_string(MAX_PARSE_DEPTH) + " levels)");
        }
        ~Guard() { --p.depth_; }
    };

    // ---- token stream ----
    const Token& cur() const { return t_[pos_]; }
    const Token& look() const { return t_[pos_ + 1 < t_.size() ? pos_ + 1 : pos_]; }
    const Token& next() {
        const Token& t = t_[pos_];
        if (pos_ + 1 < t_.size()) ++pos_;
        return t;
    }
    bool is_op(const char* op) const { return cur().type == Tok::Op && cur().text == op; }
    bool is_name(const char* n) const { return cur().type == Tok::Name && cur().text == n; }
    bool skip_op(const char* op) {
        if (!is_op(op)) return false;
        next();
        return true;
    }
    bool skip_name(const char* n) {
        if (!is_name(n)) return false;
        next();
        return true;
    }

    [[noreturn]] void fail(const std::string& msg) const { throw SyntaxError{msg, cur().offset}; }
    [[noreturn]] void fail_at(uint32_t offset, const std::string& msg) const { throw SyntaxError{msg, offset}; }

    static std::string describe(const Token& t) {
        switch (t.type) {
        case Tok::Data: return "template data";
        case Tok::VarBegin: return "'begin of print statement'";
        case Tok::VarEnd: return "'end of print statement'";
        case Tok::BlockBegin: return "'begin of statement block'";
        case Tok::BlockEnd: return "'end of statement block'";
        case Tok::Name: return "'" + t.text + "'";
        case Tok::String: return "string";
        case Tok::Int: return "integer";
        case Tok::Float: return "float";
        case Tok::Op: return "'" + t.text + "'";
        case Tok::Eof: return "end of template";
        }
        return "token";
    }

    void expect(Tok type, const char* what) {
        if (cur().type != type) fail(std::string("expected token '") + what + "', got " + describe(cur()));
        next();
    }
    void expect_op(const char* op) {
        if (!is_op(op)) fail(std::string("expected token '") + op + "', got " + describe(cur()));
        next();
    }
    void expect_name(const char* n) {
        if (!is_name(n)) fail(std::string("expected token '") + n + "', got " + describe(cur()));
        next();
    }
    std::string expect_identifier() {
        if (cur().type != Tok::Name) fail("expected token 'name', got " + describe(cur()));
        return next().text;
    }

    uint32_t intern(const std::string& n) {
        auto [it, added] = prog_.ids.emplace(n, static_cast<uint32_t>(prog_.names.size()));
        if (added) prog_.names.push_back(n);
        return it->second;
    }

    ExprPtr make(ExprKind k, uint32_t offset) {
        auto e = std::make_unique<Expr>();
        e->kind = k;
        e->offset = offset;
        return e;
    }

    // ---- statements ----

    bool at_end_tag(const std::vector<std::string>& ends) const {
        if (cur().type != Tok::Name) return false;
        for (const auto& e : ends)
            if (cur().text == e) return true;
        return false;
    }

    [[noreturn]] void fail_eof_or_unknown(const std::string* tag, uint32_t offset) const {
        std::string msg = tag ? "Encountered unknown tag '" + *tag + "'." : "Unexpected end of template.";
        if (!end_stack_.empty()) {
            std::string looking;
            for (const auto& e : end_stack_.back()) looking += (looking.empty() ? "'" : " or '") + e + "'";
            bool expected = false;
            if (tag)
                for (const auto& ends : end_stack_)
                    for (const auto& e : ends) expected |= e == *tag;
            if (expected)
                msg += " You probably made a nesting mistake. Jinja is expecting this tag, but currently looking for " + looking + ".";
            else
                msg += " Jinja was looking for the following tags: " + looking + ".";
        }
        if (!tag_stack_.empty()) msg += " The innermost block that needs to be closed is '" + tag_stack_.back() + "'.";
        fail_at(offset, msg);
    }

    Body subparse(const std::vector<std::string>& ends) {
        Guard g(*this);
        Body body;
        if (!ends.empty()) end_stack_.push_back(ends);
        while (cur().type != Tok::Eof) {
            const Token& t = cur();
            if (t.type == Tok::Data) {
                auto s = std::make_unique<Stmt>();
                s->kind = StmtKind::Text;
                s->offset = t.offset;
                s->text = t.text;
                body.push_back(std::move(s));
                next();
            } else if (t.type == Tok::VarBegin) {
                next();
                auto s = std::make_unique<Stmt>();
                s->kind = StmtKind::Output;
                s->offset = cur().offset;
                s->expr = parse_tuple(false, true, {}, false);
                expect(Tok::VarEnd, "end of print statement");
                body.push_back(std::move(s));
            } else if (t.type == Tok::BlockBegin) {
                next();
                if (!ends.empty() && at_end_tag(ends)) {
                    end_stack_.pop_back();
                    return body;
                }
                parse_statement(body);
                expect(Tok::BlockEnd, "end of statement block");
            } else {
                fail("unexpected " + describe(t));
            }
        }
        if (!ends.empty()) end_stack_.pop_back();
        return body;
    }

    // Body up to one of `ends` (left as the current token; consumed if drop_needle).
    Body parse_statements(const std::vector<std::string>& ends, bool drop_needle) {
        skip_op(":");
        expect(Tok::BlockEnd, "end of statement block");
        Body body = subparse(ends);
        if (cur().type == Tok::Eof) {
            end_stack_.push_back(ends);
            fail_eof_or_unknown(nullptr, cur().offset);
        }
        if (drop_needle) next();
        return body;
    }

    void parse_statement(Body& out) {
        if (cur().type != Tok::Name) fail("tag name expected");
        std::string tag = cur().text;
        uint32_t offset = cur().offset;
        auto s = std::make_unique<Stmt>();
        s->offset = offset;
        static const char* unsupported[] = {"extends", "include", "import", "from", "autoescape"};
        for (const char* u : unsupported)
            if (tag == u) fail("'" + tag + "' is not supported in chat templates (no template loader)");
        tag_stack_.push_back(tag);
        if (tag == "for") {
            parse_for(*s);
        } else if (tag == "if") {
            parse_if(*s);
        } else if (tag == "set") {
            parse_set(*s);
        } else if (tag == "macro") {
            parse_macro(*s);
        } else if (tag == "call") {
            parse_call_block(*s);
        } else if (tag == "filter") {
            parse_filter_block(*s);
        } else if (tag == "with") {
            parse_with(*s);
        } else if (tag == "print") {
            next();
            s->kind = StmtKind::Output;
            auto tuple = make(ExprKind::Tuple, offset);
            while (cur().type != Tok::BlockEnd) {
                if (!tuple->items.empty()) expect_op(",");
                tuple->items.push_back(parse_expression(true));
            }
            // {% print a, b %} prints each expression, like one output node per item
            for (auto& e : tuple->items) {
                auto p = std::make_unique<Stmt>();
                p->kind = StmtKind::Output;
                p->offset = e->offset;
                p->expr = std::move(e);
                out.push_back(std::move(p));
            }
            tag_stack_.pop_back();
            return;
        } else if (tag == "break" || tag == "continue") {
            next();
            if (loop_depth_ == 0) fail_at(offset, "'" + tag + "' outside of a loop");
            s->kind = tag == "break" ? StmtKind::Break : StmtKind::Continue;
        } else if (tag == "block") {
            next();
            expect_identifier();
            skip_name("scoped");
            skip_name("required");
            s->kind = StmtKind::Scope;
            s->body = parse_statements({"endblock"}, true);
            if (cur().type == Tok::Name) next();  // {% endblock name %}
        } else if (tag == "generation") {
            // Hugging Face's AssistantTracker tag: marks assistant text, renders its body as is
            next();
            s->kind = StmtKind::Scope;
            s->body = parse_statements({"endgeneration"}, true);
        } else {
            tag_stack_.pop_back();
            fail_eof_or_unknown(&tag, offset);
        }
        tag_stack_.pop_back();
        out.push_back(std::move(s));
    }

    void parse_for(Stmt& s) {
        next();
        s.kind = StmtKind::For;
        s.target = parse_assign_target(true, false, {"in"});
        expect_name("in");
        s.expr = parse_tuple(false, false, {"recursive"}, false);
        if (skip_name("if")) s.cond = parse_expression(true);
        s.recursive = skip_name("recursive");
        int soft = soft_;
        soft_ = 0;
        ++loop_depth_;
        s.body = parse_statements({"endfor", "else"}, false);
        --loop_depth_;
        if (next().text != "endfor") {
            // the else body runs when the loop did not iterate, so break there leaves an outer loop
            s.else_body = parse_statements({"endfor"}, true);
        }
        soft_ = soft;
    }

    void parse_if(Stmt& s) {
        next();
        ++soft_;
        Stmt* node = &s;
        while (true) {
            node->kind = StmtKind::If;
            node->expr = parse_tuple(false, false, {}, false);
            node->body = parse_statements({"elif", "else", "endif"}, false);
            const Token& t = next();
            if (t.text == "elif") {
                auto e = std::make_unique<Stmt>();
                e->offset = cur().offset;
                Stmt* raw = e.get();
                node->else_body.push_back(std::move(e));
                node = raw;
                continue;
            }
            if (t.text == "else") node->else_body = parse_statements({"endif"}, true);
            break;
        }
        --soft_;
    }

    void parse_set(Stmt& s) {
        next();
        s.target = parse_assign_target(true, true, {});
        if (skip_op("=")) {
            s.kind = StmtKind::Set;
            s.expr = parse_tuple(false, true, {}, false);
            return;
        }
        s.kind = StmtKind::SetBlock;
        parse_filter_chain(s.filters, false);
        int soft = soft_;
        soft_ = 0;
        s.body = parse_statements({"endset"}, true);
        soft_ = soft;
    }

    void parse_signature(MacroDef& m) {
        expect_op("(");
        while (!is_op(")")) {
            if (!m.params.empty()) expect_op(",");
            std::string n = expect_identifier();
            m.param_names.push_back(n);
            m.params.push_back(intern(n));
            if (skip_op("=")) {
                m.defaults.push_back(parse_expression(true));
            } else if (!m.defaults.empty()) {
                fail("non-default argument follows default argument");
            }
        }
        expect_op(")");
    }

    // Whether a macro body reads caller, varargs or kwargs (Jinja2 passes them only then).
    void scan_specials(MacroDef& m) {
        uint32_t caller = intern("caller"), varargs = intern("varargs"), kwargs = intern("kwargs");
        std::function<void(const Expr*)> ex = [&](const Expr* e) {
            if (!e) return;
            if (e->kind == ExprKind::Name) {
                m.uses_caller |= e->var == caller;
                m.uses_varargs |= e->var == varargs;
                m.uses_kwargs |= e->var == kwargs;
            }
            ex(e->a.get());
            ex(e->b.get());
            ex(e->c.get());
            ex(e->star.get());
            ex(e->starstar.get());
            for (const auto& i : e->items) ex(i.get());
            for (const auto& k : e->kwargs) ex(k.value.get());
        };
        std::function<void(const Body&)> st = [&](const Body& body) {
            for (const auto& s : body) {
                ex(s->expr.get());
                ex(s->cond.get());
                for (const auto& f : s->filters) ex(f.get());
                for (const auto& v : s->with_values) ex(v.get());
                st(s->body);
                st(s->else_body);
                if (s->macro) {
                    for (const auto& d : s->macro->defaults) ex(d.get());
                    st(s->macro->body);
                }
            }
        };
        st(m.body);
    }

    void parse_macro(Stmt& s) {
        next();
        s.kind = StmtKind::Macro;
        s.macro = std::make_shared<MacroDef>();
        s.macro->offset = s.offset;
        s.macro->name = expect_identifier();
        s.target.var = intern(s.macro->name);
        parse_signature(*s.macro);
        int soft = soft_, ld = loop_depth_;
        soft_ = loop_depth_ = 0;
        s.macro->body = parse_statements({"endmacro"}, true);
        soft_ = soft;
        loop_depth_ = ld;
        scan_specials(*s.macro);
    }

    void parse_call_block(Stmt& s) {
        next();
        s.kind = StmtKind::CallBlock;
        s.macro = std::make_shared<MacroDef>();
        s.macro->name = "caller";
        s.macro->offset = s.offset;
        if (is_op("(")) parse_signature(*s.macro);
        s.expr = parse_expression(true);
        if (s.expr->kind != ExprKind::Call) fail_at(s.offset, "expected call");
        int soft = soft_, ld = loop_depth_;
        soft_ = loop_depth_ = 0;
        s.macro->body = parse_statements({"endcall"}, true);
        soft_ = soft;
        loop_depth_ = ld;
        scan_specials(*s.macro);
    }

    void parse_filter_block(Stmt& s) {
        next();
        s.kind = StmtKind::FilterBlock;
        parse_filter_chain(s.filters, true);
        int soft = soft_;
        soft_ = 0;
        s.body = parse_statements({"endfilter"}, true);
        soft_ = soft;
    }

    void parse_with(Stmt& s) {
        next();
        s.kind = StmtKind::With;
        while (cur().type != Tok::BlockEnd) {
            if (!s.with_targets.empty()) expect_op(",");
            s.with_targets.push_back(parse_assign_target(true, false, {}));
            expect_op("=");
            s.with_values.push_back(parse_expression(true));
        }
        int soft = soft_;
        soft_ = 0;
        s.body = parse_statements({"endwith"}, true);
        soft_ = soft;
    }

    // ---- assignment targets ----

    Target parse_assign_target(bool with_tuple, bool with_namespace, const std::vector<std::string>& extra_end) {
        uint32_t offset = cur().offset;
        auto one = [&]() -> Target {
            Target t;
            if (cur().type == Tok::Name) {
                std::string n = next().text;
                if (n == "true" || n == "false" || n == "True" || n == "False" || n == "none" || n == "None")
                    fail_at(offset, "can't assign to 'const'");
                if (with_namespace && is_op(".")) {
                    next();
                    t.kind = Target::NsAttr;
                    t.var = intern(n);
                    t.attr = expect_identifier();
                } else {
                    t.kind = Target::Name;
                    t.var = intern(n);
                }
                return t;
            }
            if (is_op("(")) {
                next();
                Target inner = parse_assign_target(true, with_namespace, {});
                expect_op(")");
                return inner;
            }
            fail_at(cur().offset, "can't assign to " + describe(cur()));
        };
        if (!with_tuple) return one();
        Target first;
        std::vector<Target> items;
        bool is_tuple = false;
        while (true) {
            if (!items.empty()) expect_op(",");
            if (is_tuple_end(extra_end)) break;
            items.push_back(one());
            if (is_op(",")) {
                is_tuple = true;
            } else {
                break;
            }
        }
        if (!is_tuple) {
            if (items.empty()) fail("Expected an expression, got " + describe(cur()));
            return std::move(items[0]);
        }
        Target t;
        t.kind = Target::Tuple;
        t.items = std::move(items);
        for (const auto& i : t.items)
            if (i.kind == Target::NsAttr) fail_at(offset, "can't assign to a namespace attribute in a tuple");
        return t;
    }

    bool is_tuple_end(const std::vector<std::string>& extra_end) const {
        if (cur().type == Tok::VarEnd || cur().type == Tok::BlockEnd || (cur().type == Tok::Op && cur().text == ")") ||
            cur().type == Tok::Eof)
            return true;
        return at_end_tag(extra_end);
    }

    // ---- expressions ----

    ExprPtr parse_tuple(bool simplified, bool with_condexpr, const std::vector<std::string>& extra_end, bool explicit_parens) {
        uint32_t offset = cur().offset;
        std::vector<ExprPtr> args;
        bool is_tuple = false;
        while (true) {
            if (!args.empty()) expect_op(",");
            if (is_tuple_end(extra_end)) break;
            args.push_back(simplified ? parse_primary() : parse_expression(with_condexpr));
            if (is_op(",")) {
                is_tuple = true;
            } else {
                break;
            }
        }
        if (!is_tuple) {
            if (!args.empty()) return std::move(args[0]);
            if (!explicit_parens) fail("Expected an expression, got " + describe(cur()));
        }
        auto t = make(ExprKind::Tuple, offset);
        t->items = std::move(args);
        return t;
    }

    ExprPtr parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

    ExprPtr parse_condexpr() {
        Guard g(*this);
        uint32_t offset = cur().offset;
        ExprPtr e1 = parse_or();
        while (is_name("if")) {
            next();
            ++soft_;
            auto c = make(ExprKind::Cond, offset);
            c->a = parse_or();
            c->b = std::move(e1);
            if (skip_name("else")) c->c = parse_condexpr();
            --soft_;
            e1 = std::move(c);
            offset = cur().offset;
        }
        return e1;
    }

    ExprPtr binary(ExprKind k, ExprPtr l, ExprPtr r, uint32_t offset) {
        auto e = make(k, offset);
        e->a = std::move(l);
        e->b = std::move(r);
        return e;
    }

    ExprPtr parse_or() {
        uint32_t offset = cur().offset;
        ExprPtr l = parse_and();
        while (skip_name("or")) l = binary(ExprKind::Or, std::move(l), parse_and(), offset);
        return l;
    }

    ExprPtr parse_and() {
        uint32_t offset = cur().offset;
        ExprPtr l = parse_not();
        while (skip_name("and")) l = binary(ExprKind::And, std::move(l), parse_not(), offset);
        return l;
    }

    ExprPtr parse_not() {
        if (is_name("not")) {
            Guard g(*this);
            auto e = make(ExprKind::Not, next().offset);
            e->a = parse_not();
            return e;
        }
        return parse_compare();
    }

    ExprPtr parse_compare() {
        uint32_t offset = cur().offset;
        ExprPtr first = parse_math1();
        std::unique_ptr<Expr> cmp;
        while (true) {
            CmpOp op;
            if (cur().type == Tok::Op && cur().text == "==") op = CmpOp::Eq;
            else if (cur().type == Tok::Op && cur().text == "!=") op = CmpOp::Ne;
            else if (cur().type == Tok::Op && cur().text == "<") op = CmpOp::Lt;
            else if (cur().type == Tok::Op && cur().text == "<=") op = CmpOp::Le;
            else if (cur().type == Tok::Op && cur().text == ">") op = CmpOp::Gt;
            else if (cur().type == Tok::Op && cur().text == ">=") op = CmpOp::Ge;
            else if (is_name("in")) op = CmpOp::In;
            else if (is_name("not") && look().type == Tok::Name && look().text == "in") {
                next();
                op = CmpOp::NotIn;
            } else break;
            next();
            if (!cmp) {
                cmp = make(ExprKind::Compare, offset);
                cmp->items.push_back(std::move(first));
            }
            cmp->cmp.push_back(op);
            cmp->items.push_back(parse_math1());
        }
        return cmp ? std::move(cmp) : std::move(first);
    }

    ExprPtr parse_math1() {
        uint32_t offset = cur().offset;
        ExprPtr l = parse_concat();
        while (is_op("+") || is_op("-")) {
            BinOp op = next().text == "+" ? BinOp::Add : BinOp::Sub;
            l = binary(ExprKind::Binary, std::move(l), parse_concat(), offset);
            l->op = op;
        }
        return l;
    }

    ExprPtr parse_concat() {
        uint32_t offset = cur().offset;
        ExprPtr first = parse_math2();
        if (!is_op("~")) return first;
        auto c = make(ExprKind::Concat, offset);
        c->items.push_back(std::move(first));
        while (skip_op("~")) c->items.push_back(parse_math2());
        return c;
    }

    ExprPtr parse_math2() {
        uint32_t offset = cur().offset;
        ExprPtr l = parse_pow();
        while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
            std::string o = next().text;
            BinOp op = o == "*" ? BinOp::Mul : o == "/" ? BinOp::Div : o == "//" ? BinOp::FloorDiv : BinOp::Mod;
            l = binary(ExprKind::Binary, std::move(l), parse_pow(), offset);
            l->op = op;
        }
        return l;
    }

    ExprPtr parse_pow() {
        uint32_t offset = cur().offset;
        ExprPtr l = parse_unary(true);
        while (skip_op("**")) {
            l = binary(ExprKind::Binary, std::move(l), parse_unary(true), offset);
            l->op = BinOp::Pow;
        }
        return l;
    }

    ExprPtr parse_unary(bool with_filter) {
        Guard g(*this);
        uint32_t offset = cur().offset;
        ExprPtr node;
        if (is_op("-") || is_op("+")) {
            bool neg = next().text == "-";
            node = make(neg ? ExprKind::Neg : ExprKind::Pos, offset);
            node->a = parse_unary(false);
        } else {
            node = parse_primary();
        }
        node = parse_postfix(std::move(node));
        if (with_filter) node = parse_filter_expr(std::move(node));
        return node;
    }

    ExprPtr parse_primary() {
        Guard g(*this);
        const Token& t = cur();
        uint32_t offset = t.offset;
        if (t.type == Tok::Name) {
            const std::string& n = t.text;
            auto c = make(ExprKind::Const, offset);
            if (n == "true" || n == "True") {
                c->value = Value::boolean(true);
            } else if (n == "false" || n == "False") {
                c->value = Value::boolean(false);
            } else if (n == "none" || n == "None") {
                c->value = Value::none();
            } else {
                c->kind = ExprKind::Name;
                c->var = intern(n);
                c->name = n;
            }
            next();
            return c;
        }
        if (t.type == Tok::String) {
            std::string s = next().text;
            while (cur().type == Tok::String) s += next().text;  // "a" "b" is "ab"
            auto c = make(ExprKind::Const, offset);
            c->value = Value::string(std::move(s));
            return c;
        }
        if (t.type == Tok::Int || t.type == Tok::Float) {
            auto c = make(ExprKind::Const, offset);
            c->value = t.type == Tok::Int ? Value::integer(t.ival) : Value::number(t.fval);
            next();
            return c;
        }
        if (is_op("(")) {
            next();
            ExprPtr e = parse_tuple(false, true, {}, true);
            expect_op(")");
            return e;
        }
        if (is_op("[")) {
            next();
            auto l = make(ExprKind::List, offset);
            while (!is_op("]")) {
                if (!l->items.empty()) expect_op(",");
                if (is_op("]")) break;
                l->items.push_back(parse_expression(true));
            }
            expect_op("]");
            return l;
        }
        if (is_op("{")) {
            next();
            auto d = make(ExprKind::Dict, offset);
            while (!is_op("}")) {
                if (!d->items.empty()) expect_op(",");
                if (is_op("}")) break;
                d->items.push_back(parse_expression(true));
                expect_op(":");
                d->items.push_back(parse_expression(true));
            }
            expect_op("}");
            return d;
        }
        fail("unexpected " + describe(t));
    }

    ExprPtr parse_postfix(ExprPtr node) {
        while (true) {
            if (is_op(".") || is_op("[")) {
                node = parse_subscript(std::move(node));
            } else if (is_op("(")) {
                node = parse_call(std::move(node));
            } else {
                return node;
            }
        }
    }

    ExprPtr parse_filter_expr(ExprPtr node) {
        while (true) {
            if (is_op("|")) {
                next();
                node = parse_filter(std::move(node));
            } else if (is_name("is")) {
                node = parse_test(std::move(node));
            } else if (is_op("(")) {
                node = parse_call(std::move(node));
            } else {
                return node;
            }
        }
    }

    ExprPtr parse_subscript(ExprPtr node) {
        Guard g(*this);
        const Token& t = next();
        uint32_t offset = t.offset;
        if (t.text == ".") {
            const Token& a = cur();
            if (a.type == Tok::Name) {
                auto e = make(ExprKind::Getattr, offset);
                e->a = std::move(node);
                e->name = next().text;
                return e;
            }
            if (a.type != Tok::Int) fail("expected name or number");
            auto e = make(ExprKind::Getitem, offset);
            e->a = std::move(node);
            e->b = make(ExprKind::Const, a.offset);
            e->b->value = Value::integer(a.ival);
            next();
            return e;
        }
        std::vector<ExprPtr> args;
        while (!is_op("]")) {
            if (!args.empty()) expect_op(",");
            args.push_back(parse_subscribed());
        }
        expect_op("]");
        auto e = make(ExprKind::Getitem, offset);
        e->a = std::move(node);
        if (args.size() == 1) {
            e->b = std::move(args[0]);
        } else {
            e->b = make(ExprKind::Tuple, offset);
            e->b->items = std::move(args);
        }
        return e;
    }

    ExprPtr parse_subscribed() {
        uint32_t offset = cur().offset;
        ExprPtr start;
        if (!is_op(":")) {
            start = parse_expression(true);
            if (!is_op(":")) return start;
        }
        next();  // the first ':'
        auto s = make(ExprKind::Slice, offset);
        s->a = std::move(start);
        if (!is_op(":") && !is_op("]") && !is_op(",")) s->b = parse_expression(true);
        if (skip_op(":")) {
            if (!is_op("]") && !is_op(",")) s->c = parse_expression(true);
        }
        return s;
    }

    void parse_call_args(Expr& e) {
        uint32_t offset = cur().offset;
        expect_op("(");
        bool require_comma = false;
        auto ensure = [&](bool ok) {
            if (!ok) fail_at(offset, "invalid syntax for function call expression");
        };
        while (!is_op(")")) {
            if (require_comma) {
                expect_op(",");
                if (is_op(")")) break;
            }
            if (is_op("*")) {
                ensure(!e.star && !e.starstar);
                next();
                e.star = parse_expression(true);
            } else if (is_op("**")) {
                ensure(!e.starstar);
                next();
                e.starstar = parse_expression(true);
            } else if (cur().type == Tok::Name && look().type == Tok::Op && look().text == "=") {
                ensure(!e.starstar);
                std::string key = next().text;
                next();
                e.kwargs.push_back(Keyword{key, parse_expression(true)});
            } else {
                ensure(!e.star && !e.starstar && e.kwargs.empty());
                e.items.push_back(parse_expression(true));
            }
            require_comma = true;
        }
        expect_op(")");
    }

    ExprPtr parse_call(ExprPtr node) {
        Guard g(*this);
        auto e = make(ExprKind::Call, cur().offset);
        e->a = std::move(node);
        parse_call_args(*e);
        return e;
    }

    std::string dotted_name() {
        std::string n = expect_identifier();
        while (is_op(".")) {
            next();
            n += "." + expect_identifier();
        }
        return n;
    }

    ExprPtr parse_filter(ExprPtr node) {
        Guard g(*this);
        auto e = make(ExprKind::Filter, cur().offset);
        e->a = std::move(node);
        e->name = dotted_name();
        e->filter = find_filter(e->name);
        if (!e->filter && soft_ == 0) fail_at(e->offset, "No filter named '" + e->name + "'.");
        if (is_op("(")) parse_call_args(*e);
        return e;
    }

    void parse_filter_chain(std::vector<ExprPtr>& out, bool start_inline) {
        while (is_op("|") || start_inline) {
            if (!start_inline) next();
            start_inline = false;
            out.push_back(parse_filter(nullptr));
        }
    }

    ExprPtr parse_test(ExprPtr node) {
        Guard g(*this);
        uint32_t offset = next().offset;  // "is"
        bool negated = skip_name("not");
        auto e = make(ExprKind::Test, offset);
        e->a = std::move(node);
        e->name = dotted_name();
        e->test = find_test(e->name);
        if (!e->test && soft_ == 0) fail_at(offset, "No test named '" + e->name + "'.");
        if (is_op("(")) {
            parse_call_args(*e);
        } else if ((cur().type == Tok::Name || cur().type == Tok::String || cur().type == Tok::Int ||
                    cur().type == Tok::Float || is_op("(") || is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
            if (is_name("is")) fail("You cannot chain multiple tests with is");
            e->items.push_back(parse_postfix(parse_primary()));
        }
        if (!negated) return e;
        auto n = make(ExprKind::Not, offset);
        n->a = std::move(e);
        return n;
    }
};

bool valid_utf8(std::string_view s, size_t& bad) {
    for (size_t i = 0; i < s.size();) {
        size_t at = i;
        uint32_t cp = utf8_next(s, i);
        if (cp >= 0xDC80 && cp <= 0xDCFF && static_cast<unsigned char>(s[at]) >= 0x80) {
            bad = at;
            return false;
        }
    }
    return true;
}

} // namespace

std::shared_ptr<Program> parse_program(std::string name, std::string_view source) {
    return parse_program(std::move(name), source, LexOptions{});
}

std::shared_ptr<Program> parse_program(std::string name, std::string_view source, const LexOptions& opt) {
    auto prog = std::make_shared<Program>();
    prog->name = std::move(name);
    prog->source = normalize_source(source, opt.keep_trailing_newline);
    size_t bad = 0;
    if (!valid_utf8(prog->source, bad)) throw SyntaxError{"invalid UTF-8", bad};
    // Names every render needs, interned first so their ids are fixed.
    for (const char* n : {"loop", "caller", "varargs", "kwargs"}) {
        prog->ids.emplace(n, static_cast<uint32_t>(prog->names.size()));
        prog->names.push_back(n);
    }
    Parser p(*prog, tokenize(prog->source, opt));
    prog->body = p.parse_template();
    return prog;
}

} // namespace slm::chat
