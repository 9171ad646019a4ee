// data/synth.cpp - `slm data synth`: template-driven synthetic examples with worked answers.
//
// The Phi idea (Gunasekar et al. 2023, "Textbooks Are All You Need"; Eldan & Li 2023,
// TinyStories) is data whose content is constrained and whose answers are right by construction:
// every number is sampled, every answer computed, and each step of the solution is written as
// one equation "a op b = c" on its own line, GSM8K-style, ending with "#### <answer>".
#include "data/text_util.h"

#include "slm/data.h"
#include "slm/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace slm {

namespace {

struct Person {
    const char* name;
    const char* subj;  // she / he
    const char* obj;   // her / him
    const char* poss;  // her / his
};
const Person kPeople[] = {
    {"Lily", "she", "her", "her"}, {"Tom", "he", "him", "his"},   {"Mia", "she", "her", "her"},
    {"Ben", "he", "him", "his"},   {"Sara", "she", "her", "her"}, {"Max", "he", "him", "his"},
    {"Anna", "she", "her", "her"}, {"Sam", "he", "him", "his"},   {"Zoe", "she", "her", "her"},
    {"Leo", "he", "him", "his"},   {"Emma", "she", "her", "her"}, {"Jack", "he", "him", "his"},
};
struct Thing {
    const char* one;
    const char* many;
};
const Thing kThings[] = {{"apple", "apples"},     {"marble", "marbles"}, {"pencil", "pencils"},
                         {"sticker", "stickers"}, {"cookie", "cookies"}, {"book", "books"},
                         {"shell", "shells"},     {"balloon", "balloons"}, {"card", "cards"},
                         {"flower", "flowers"},   {"toy car", "toy cars"}, {"crayon", "crayons"}};
const Thing kBoxes[] = {{"box", "boxes"}, {"bag", "bags"}, {"jar", "jars"}, {"basket", "baskets"}, {"pack", "packs"}};
struct Unit {
    Thing big, small;
    int64_t factor;
};
const Unit kUnits[] = {
    {{"meter", "meters"}, {"centimeter", "centimeters"}, 100}, {{"kilometer", "kilometers"}, {"meter", "meters"}, 1000},
    {{"kilogram", "kilograms"}, {"gram", "grams"}, 1000},      {{"hour", "hours"}, {"minute", "minutes"}, 60},
    {{"minute", "minutes"}, {"second", "seconds"}, 60},        {{"day", "days"}, {"hour", "hours"}, 24},
    {{"week", "weeks"}, {"day", "days"}, 7},                   {{"dollar", "dollars"}, {"cent", "cents"}, 100},
    {{"foot", "feet"}, {"inch", "inches"}, 12},                {{"yard", "yards"}, {"foot", "feet"}, 3},
};

template <class T, size_t N>
const T& pick(data::Rng& rng, const T (&a)[N]) {
    return a[rng.below(N)];
}

std::string cap(std::string s) {
    if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = static_cast<char>(s[0] - 32);
    return s;
}

std::string num(int64_t v) { return std::to_string(v); }
std::string eq(int64_t a, char op, int64_t b, int64_t c) { return num(a) + " " + op + " " + num(b) + " = " + num(c); }
const char* plural(const Thing& t, int64_t n) { return n == 1 ? t.one : t.many; }

// Two different people.
std::pair<const Person*, const Person*> two_people(data::Rng& rng) {
    const Person* a = &pick(rng, kPeople);
    const Person* b = a;
    while (b == a) b = &pick(rng, kPeople);
    return {a, b};
}

DataSynthExample arithmetic(data::Rng& rng) {
    DataSynthExample e;
    e.family = "arithmetic";
    const auto [pa, pb] = two_people(rng);
    const Person& A = *pa;
    const Person& B = *pb;
    const Thing& t = pick(rng, kThings);
    std::string q, s;
    switch (rng.below(6)) {
    case 0: {
        const int64_t a = rng.range(2, 50), b = rng.range(2, 50);
        e.kind = "add";
        e.answer = a + b;
        q = strprintf("%s has %lld %s. %s gives %s %lld more %s. How many %s does %s have now?", A.name, (long long)a, t.many,
                      B.name, A.obj, (long long)b, t.many, t.many, A.name);
        s = strprintf("%s starts with %lld %s and gets %lld more.\n", A.name, (long long)a, t.many, (long long)b) +
            eq(a, '+', b, e.answer) + strprintf("\n%s has %lld %s now.", A.name, (long long)e.answer, t.many);
        break;
    }
    case 1: {
        const int64_t a = rng.range(5, 60), b = rng.range(1, a - 1);
        e.kind = "sub";
        e.answer = a - b;
        q = strprintf("%s had %lld %s and gave %lld of them to %s. How many %s does %s have left?", A.name, (long long)a,
                      t.many, (long long)b, B.name, t.many, A.name);
        s = strprintf("%s gives away %lld of %s %lld %s.\n", A.name, (long long)b, A.poss, (long long)a, t.many) +
            eq(a, '-', b, e.answer) +
            strprintf("\n%s has %lld %s left.", A.name, (long long)e.answer, plural(t, e.answer));
        break;
    }
    case 2: {
        const Thing& box = pick(rng, kBoxes);
        const int64_t a = rng.range(2, 12), b = rng.range(2, 12);
        e.kind = "mul";
        e.answer = a * b;
        q = strprintf("%s buys %lld %s of %s. Each %s holds %lld %s. How many %s does %s buy in all?", A.name,
                      (long long)a, box.many, t.many, box.one, (long long)b, t.many, t.many, A.name);
        s = strprintf("There are %lld %s with %lld %s in each.\n", (long long)a, box.many, (long long)b, t.many) +
            eq(a, '*', b, e.answer) + strprintf("\n%s buys %lld %s in all.", A.name, (long long)e.answer, t.many);
        break;
    }
    case 3: {
        const int64_t b = rng.range(2, 9), each = rng.range(2, 12), a = b * each;
        e.kind = "div";
        e.answer = each;
        q = strprintf("%s has %lld %s and shares them equally among %lld friends. How many %s does each friend get?",
                      A.name, (long long)a, t.many, (long long)b, t.many);
        s = strprintf("%lld %s are split into %lld equal groups.\n", (long long)a, t.many, (long long)b) +
            eq(a, '/', b, e.answer) + strprintf("\nEach friend gets %lld %s.", (long long)e.answer, t.many);
        break;
    }
    case 4: {
        const int64_t a = rng.range(2, 40), b = rng.range(2, 40), c = rng.range(1, a + b - 1);
        e.kind = "two_step";
        const int64_t mid = a + b;
        e.answer = mid - c;
        q = strprintf("%s has %lld %s. %s finds %lld more and then gives %lld to %s. How many %s does %s have now?",
                      A.name, (long long)a, t.many, cap(A.subj).c_str(), (long long)b, (long long)c, B.name, t.many, A.name);
        s = strprintf("First %s finds %lld more %s.\n", A.subj, (long long)b, t.many) + eq(a, '+', b, mid) +
            strprintf("\nThen %s gives %lld away.\n", A.subj, (long long)c) + eq(mid, '-', c, e.answer) +
            strprintf("\n%s has %lld %s now.", A.name, (long long)e.answer, plural(t, e.answer));
        break;
    }
    default: {
        const int64_t price = rng.range(1, 9), k = rng.range(2, 9), cost = price * k;
        int64_t bill = 5;
        for (int64_t b : {5, 10, 20, 50, 100})
            if (b > cost) {
                bill = b;
                break;
            }
        e.kind = "change";
        e.answer = bill - cost;
        q = strprintf("One %s costs %lld dollars. %s buys %lld %s and pays with a %lld-dollar bill. How much change does %s get?",
                      t.one, (long long)price, A.name, (long long)k, t.many, (long long)bill, A.subj);
        s = strprintf("The %s cost %lld dollars each.\n", t.many, (long long)price) + eq(price, '*', k, cost) +
            strprintf("\n%s pays %lld dollars with a %lld-dollar bill.\n", A.name, (long long)cost, (long long)bill) +
            eq(bill, '-', cost, e.answer) +
            strprintf("\n%s gets %lld %s in change.", A.name, (long long)e.answer, e.answer == 1 ? "dollar" : "dollars");
        break;
    }
    }
    e.question = q;
    e.solution = s;
    return e;
}

DataSynthExample units(data::Rng& rng) {
    DataSynthExample e;
    e.family = "units";
    const Unit& u = pick(rng, kUnits);
    std::string q, s;
    switch (rng.below(3)) {
    case 0: {
        const int64_t a = rng.range(2, 20);
        e.kind = "convert";
        e.answer = a * u.factor;
        q = strprintf("How many %s are in %lld %s?", u.small.many, (long long)a, u.big.many);
        s = strprintf("One %s is %lld %s.\n", u.big.one, (long long)u.factor, u.small.many) + eq(a, '*', u.factor, e.answer) +
            strprintf("\nSo %lld %s is %lld %s.", (long long)a, u.big.many, (long long)e.answer, u.small.many);
        break;
    }
    case 1: {
        const auto [pa, pb] = two_people(rng);
        const Thing& t = pick(rng, kThings);
        int64_t a = rng.range(2, 60), b = rng.range(2, 60);
        while (b == a) b = rng.range(2, 60);
        e.kind = "compare";
        const Person& more = a > b ? *pa : *pb;
        const int64_t hi = std::max(a, b), lo = std::min(a, b);
        e.answer = hi - lo;
        q = strprintf("%s has %lld %s and %s has %lld %s. Who has more %s, and how many more?", pa->name, (long long)a,
                      t.many, pb->name, (long long)b, t.many, t.many);
        s = strprintf("%lld is more than %lld, so %s has more.\n", (long long)hi, (long long)lo, more.name) +
            eq(hi, '-', lo, e.answer) +
            strprintf("\n%s has %lld more %s.", more.name, (long long)e.answer, plural(t, e.answer));
        break;
    }
    default: {
        const int64_t a = rng.range(2, 9);
        const int64_t c = a * u.factor;
        int64_t b = rng.range(std::max<int64_t>(1, c / 2), c * 2);
        if (b == c) ++b;
        e.kind = "compare_units";
        const int64_t hi = std::max(b, c), lo = std::min(b, c);
        e.answer = hi - lo;
        q = strprintf("Which is more, %lld %s or %lld %s? How many %s more is it?", (long long)a, u.big.many, (long long)b,
                      u.small.many, u.small.many);
        s = strprintf("First change %lld %s into %s.\n", (long long)a, u.big.many, u.small.many) + eq(a, '*', u.factor, c) +
            strprintf("\n%lld %s is more than %lld %s.\n", (long long)hi, u.small.many, (long long)lo, u.small.many) +
            eq(hi, '-', lo, e.answer) +
            strprintf("\nSo %s is more, by %lld %s.",
                      (c > b ? strprintf("%lld %s", (long long)a, u.big.many) : strprintf("%lld %s", (long long)b, u.small.many)).c_str(),
                      (long long)e.answer, plural(u.small, e.answer));
        break;
    }
    }
    e.question = q;
    e.solution = s;
    return e;
}

} // namespace

std::vector<std::string> data_synth_families() { return {"arithmetic", "units", "all"}; }

std::vector<DataSynthExample> synth_data(const DataSynthOptions& o) {
    if (o.family != "arithmetic" && o.family != "units" && o.family != "all")
        slm::fail("data synth: unknown family '%s' (arithmetic, units, all)", o.family.c_str());
    if (o.count > (size_t(1) << 26)) slm::fail("data synth: --count %zu is more than %zu", o.count, size_t(1) << 26);
    data::Rng rng(o.seed);
    std::vector<DataSynthExample> out;
    out.reserve(o.count);
    for (size_t i = 0; i < o.count; ++i) {
        const bool arith = o.family == "arithmetic" || (o.family == "all" && i % 2 == 0);
        DataSynthExample e = arith ? arithmetic(rng) : units(rng);
        e.text = "Question: " + e.question + "\nAnswer: " + e.solution + "\n#### " + num(e.answer);
        out.push_back(std::move(e));
    }
    return out;
}

std::string synth_data_jsonl(const std::vector<DataSynthExample>& examples) {
    std::string out;
    for (const DataSynthExample& e : examples) {
        nlohmann::json j;
        j["text"] = e.text;
        j["question"] = e.question;
        j["solution"] = e.solution;
        j["answer"] = e.answer;
        j["family"] = e.family;
        j["kind"] = e.kind;
        out += j.dump();
        out += '\n';
    }
    return out;
}

} // namespace slm
