#include "core/op.h"

#include "absl/strings/str_cat.h"

namespace gradserve {

std::string OpConfig::Describe(int i) const {
  std::string name = i < static_cast<int>(input_names_.size())
                         ? input_names_[i]
                         : absl::StrCat(input_names_.back(), i);
  if (i < static_cast<int>(input_values_.size()) && !input_values_[i].empty()) {
    return absl::StrCat("input '", name, "' (value '", input_values_[i], "')");
  }
  return absl::StrCat("input '", name, "'");
}

absl::Status OpConfig::ExpectFloat(int i) const {
  if (input(i).dtype != float_dtype_) {
    return Error(Describe(i), " must be ", DTypeName(float_dtype_), ", got ",
                 input(i).ToString());
  }
  return absl::OkStatus();
}

absl::Status OpConfig::ExpectInt64(int i) const {
  if (input(i).dtype != DType::kInt64) {
    return Error(Describe(i), " must be int64, got ", input(i).ToString());
  }
  return absl::OkStatus();
}

absl::Status OpConfig::ExpectRank(int i, int rank) const {
  if (static_cast<int>(shape(i).size()) != rank) {
    return Error(Describe(i), " must have rank ", rank, ", got shape ",
                 ShapeToString(shape(i)));
  }
  return absl::OkStatus();
}

absl::Status OpConfig::ExpectRankBetween(int i, int min_rank,
                                         int max_rank) const {
  int rank = static_cast<int>(shape(i).size());
  if (rank < min_rank || rank > max_rank) {
    return Error(Describe(i), " must have rank ", min_rank, " to ", max_rank,
                 ", got shape ", ShapeToString(shape(i)));
  }
  return absl::OkStatus();
}

absl::Status OpConfig::ExpectShape(int i, const Shape& expected) const {
  if (shape(i) != expected) {
    return Error(Describe(i), " must have shape ", ShapeToString(expected),
                 ", got ", ShapeToString(shape(i)));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> OpConfig::NormalizeAxis(absl::string_view attr,
                                            int64_t axis, int rank) const {
  if (axis < -rank || axis >= rank || rank == 0) {
    return Error("attribute '", attr, "' must be in [", -rank, ", ", rank,
                 ") for rank ", rank, ", got ", axis);
  }
  return static_cast<int>(axis < 0 ? axis + rank : axis);
}

}  // namespace gradserve
