// The raw-oneDNN baselines for gradserve_bench: a layer's forward,
// backward-data and backward-weights primitives built once, as oneDNN's own
// cnn_training_f32 example builds them, fed plain user memory (reordered in
// and out, as gradserve's callers send and receive plain tensors).
#ifndef GRADSERVE_TESTS_BENCH_RAW_ONEDNN_H_
#define GRADSERVE_TESTS_BENCH_RAW_ONEDNN_H_

#include <functional>

namespace gradserve::bench {

// A step of conv 3x3, 64 -> 64 channels, 56x56, batch 8, padding 1: forward,
// then dL/dx, dL/dW, dL/db from a given dL/dy.
std::function<void()> RawOnednnConvStep();

// A step of Linear 1024 -> 1024 at batch 256 (inner product): forward, then
// dL/dx, dL/dW, dL/db from a given dL/dy.
std::function<void()> RawOnednnLinearStep();

}  // namespace gradserve::bench

#endif  // GRADSERVE_TESTS_BENCH_RAW_ONEDNN_H_
