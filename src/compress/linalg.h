// linalg.h - the little dense linear algebra GPTQ needs, in double precision (the reference
// works in float32 on a GPU; double costs nothing at these sizes and keeps large, badly
// conditioned Hessians stable).
#pragma once

#include <cstdint>
#include <vector>

namespace slm {
class ThreadPool;
}

namespace slm::compress {

// In-place Cholesky factorization of the symmetric n x n row-major matrix a = L L^T: L is left
// in the lower triangle and the upper one is zeroed. Returns false (a partly overwritten) if a
// pivot is not positive and finite, i.e. a is not positive definite.
bool cholesky_lower(double* a, int64_t n, ThreadPool* pool);

// Given H (symmetric positive definite, n x n row-major), returns the upper triangular U with
// H^-1 = U^T U (GPTQ's "Cholesky of the inverse"), or an empty vector if H is not positive
// definite. H is taken by value and consumed.
std::vector<double> inverse_upper_cholesky(std::vector<double> h, int64_t n, ThreadPool* pool);

} // namespace slm::compress
