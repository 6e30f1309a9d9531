// NumPy .npz archives (np.savez / np.savez_compressed: a zip of .npy
// members, stored or deflated) <-> named tensors, through libzip.
#ifndef GRADSERVE_CLIENT_NPZ_H_
#define GRADSERVE_CLIENT_NPZ_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "gradserve/v1/tensor.pb.h"

namespace gradserve::client {

// Arrays by name: the member "x.npy" is the array "x" (np.load's keys).
using Arrays = std::map<std::string, gradserve::v1::Tensor>;

// Parses an .npz image; every member must be an .npy file ParseNpy takes.
// `what` names the file in messages.
absl::StatusOr<Arrays> ParseNpz(absl::string_view bytes,
                                absl::string_view what);
absl::StatusOr<Arrays> ReadNpz(const std::string& path);

// An .npz image of `arrays` (members stored, or deflated when `compress`).
absl::StatusOr<std::string> SerializeNpz(const Arrays& arrays,
                                         bool compress = false);
// Writes it atomically (WriteFileAtomically).
absl::Status WriteNpz(const std::string& path, const Arrays& arrays,
                      bool compress = false);

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_NPZ_H_
