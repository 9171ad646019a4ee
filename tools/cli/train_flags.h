// train_flags.h - the training-loop flags (steps, batch, learning rate, checkpoints, ...) shared by
// the commands that run slm::train with their own loss or model: slm distill, slm finetune. Each
// flag overrides the TrainOptions it is applied to (a config's, or the defaults) only when given.
// The names are slm train's (tools/cli/cmd_train.cpp), so a command line moves between them.
#pragma once

#include "slm/train.h"

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace CLI {
class App;
class Option;
}

namespace slm::cli {

struct TrainFlags {
    TrainOptions o;  // flag targets
    std::string out_type;
    bool no_resume = false;
    std::vector<std::pair<CLI::Option*, std::function<void(TrainOptions&)>>> overrides;
    // `base` with every given flag applied over it.
    TrainOptions apply(TrainOptions base) const;
};

// Registers --data, --steps, --batch, --seq-len, --grad-accum, --lr, --lr-min-ratio, --warmup,
// --beta1, --beta2, --eps, --wd, --clip, --val-fraction, --val-every, --val-batches,
// --ckpt-every, --ckpt-dir, --seed, -t/--threads, --doc-split, --log-every, --no-resume and
// --out-type on `sub`. `f` must outlive the parse (keep it in the command's shared state).
void add_train_flags(CLI::App& sub, TrainFlags& f);

} // namespace slm::cli
