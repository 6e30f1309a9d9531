// NumPy .npy files <-> gradserve.v1.Tensor.
#ifndef GRADSERVE_CLIENT_NPY_H_
#define GRADSERVE_CLIENT_NPY_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "gradserve/v1/tensor.pb.h"

namespace gradserve::client {

// Parses a .npy image (format 1.0, 2.0 or 3.0). float32 and int64 arrays
// map directly; float64 is narrowed to float32, int32 widened to int64, and
// bool/uint8 become float32 0/1 (masks). `what` names the file in messages.
absl::StatusOr<gradserve::v1::Tensor> ParseNpy(absl::string_view bytes,
                                               absl::string_view what);
absl::StatusOr<gradserve::v1::Tensor> ReadNpy(const std::string& path);

// A .npy (format 1.0) image of a float32 or int64 tensor, whichever of its
// value fields carries the values.
absl::StatusOr<std::string> SerializeNpy(const gradserve::v1::Tensor& t);
absl::Status WriteNpy(const std::string& path, const gradserve::v1::Tensor& t);

// Reads or writes a whole file; errors name the path.
absl::StatusOr<std::string> ReadFile(const std::string& path);
absl::Status WriteFile(const std::string& path, absl::string_view bytes);

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_NPY_H_
