// optimizer.cpp - AdamW, its learning-rate schedule and global-norm gradient clipping.
#include "train/trainer_internal.h"

#include <cmath>

namespace slm::train_impl {

float lr_at(const TrainOptions& o, int64_t step) {
    if (o.warmup > 0 && step < o.warmup)
        return o.lr * static_cast<float>(static_cast<double>(step + 1) / static_cast<double>(o.warmup));
    const float lr_min = o.lr * o.lr_min_ratio;
    const int64_t decay_steps = o.steps - o.warmup - 1;  // the last step reaches lr_min
    if (decay_steps <= 0) return o.lr;
    const double t = std::min(1.0, static_cast<double>(step - o.warmup) / static_cast<double>(decay_steps));
    const double coeff = 0.5 * (1.0 + std::cos(M_PI * t));  // 1 -> 0
    return static_cast<float>(lr_min + coeff * (o.lr - lr_min));
}

AdamW::AdamW(std::vector<TrainParam>& params) : params_(&params) {
    m.resize(params_->size());
    v.resize(params_->size());
    for (size_t i = 0; i < params_->size(); ++i) {
        const TrainParam& p = (*params_)[i];
        if (!p.g) continue;
        m[i].assign(p.n, 0.0f);
        v[i].assign(p.n, 0.0f);
    }
}

double AdamW::grad_norm() const {
    double s = 0.0;
    for (const TrainParam& p : *params_) {
        if (!p.g) continue;
        for (size_t k = 0; k < p.n; ++k) s += static_cast<double>(p.g[k]) * p.g[k];
    }
    return std::sqrt(s);
}

double AdamW::clip(float max_norm) {
    const double norm = grad_norm();
    if (max_norm > 0 && norm > max_norm && std::isfinite(norm)) {
        const float scale = static_cast<float>(max_norm / norm);
        for (TrainParam& p : *params_)
            if (p.g)
                for (size_t k = 0; k < p.n; ++k) p.g[k] *= scale;
    }
    return norm;
}

void AdamW::step(const TrainOptions& o, float lr, int64_t t) {
    const float b1 = o.beta1, b2 = o.beta2;
    const float bc1 = 1.0f - static_cast<float>(std::pow(static_cast<double>(b1), static_cast<double>(t)));
    const float bc2 = 1.0f - static_cast<float>(std::pow(static_cast<double>(b2), static_cast<double>(t)));
    for (size_t i = 0; i < params_->size(); ++i) {
        TrainParam& p = (*params_)[i];
        if (!p.g) continue;
        // Decay only matrices: norms' gains are not shrunk towards 0 (GPT-2/llm.c practice).
        const float decay = p.is_matrix() ? lr * o.weight_decay : 0.0f;
        float* w = p.w;
        const float* g = p.g;
        float* mi = m[i].data();
        float* vi = v[i].data();
        for (size_t k = 0; k < p.n; ++k) {
            mi[k] = b1 * mi[k] + (1.0f - b1) * g[k];
            vi[k] = b2 * vi[k] + (1.0f - b2) * g[k] * g[k];
            const float mhat = mi[k] / bc1;
            const float vhat = vi[k] / bc2;
            w[k] -= lr * (mhat / (std::sqrt(vhat) + o.eps)) + decay * w[k];
        }
    }
}

} // namespace slm::train_impl
