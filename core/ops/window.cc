#include "core/ops/window.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "core/checked_math.h"
#include "core/status_macros.h"

namespace gradserve {
namespace {

// `extent`, or an error naming attribute `attr` (of `values`) when the
// extent it gives in spatial dim d overflowed (nullopt) or exceeds
// kMaxAttrExtent.
absl::StatusOr<int64_t> WithinMaxExtent(const OpConfig& c, size_t d,
                                        absl::string_view attr,
                                        const std::vector<int64_t>& values,
                                        absl::string_view what,
                                        std::optional<int64_t> extent) {
  if (extent && *extent <= kMaxAttrExtent) return *extent;
  return c.Error("attribute '", attr, "' ", ShapeToString(values),
                 " makes the ", what, " in spatial dim ", d, " ",
                 extent ? absl::StrCat(*extent) : "overflow int64",
                 ", expected at most ", kMaxAttrExtent);
}

}  // namespace

absl::StatusOr<Padding> ReadPadding(const Attributes& a, absl::string_view name,
                                    size_t spatial) {
  ASSIGN_OR_RETURN(std::vector<int64_t> ints, a.GetInts(name, 0));
  if (ints.size() == 1) ints.assign(spatial, ints[0]);
  if (ints.size() != spatial && ints.size() != 2 * spatial) {
    return a.Invalid(
        name, absl::StrCat(spatial, " ints (each dim's both sides) or ",
                           2 * spatial, " (each dim's before, then after)"));
  }
  for (int64_t v : ints) {
    if (v < 0 || v > kMaxAttrExtent) {
      return a.Invalid(name, absl::StrCat(">= 0 and <= ", kMaxAttrExtent));
    }
  }
  Padding p;
  p.begin.assign(ints.begin(), ints.begin() + spatial);
  p.end.assign(ints.end() - spatial, ints.end());
  return p;
}

absl::StatusOr<std::vector<int64_t>> WindowOutputDims(const OpConfig& c,
                                                      const Window& w) {
  const Shape& x = c.shape(0);
  std::vector<int64_t> out;
  for (size_t d = 0; d < w.kernel.size(); ++d) {
    const int64_t in = x[2 + d], k = w.kernel[d];
    if (k < 1) {
      return c.Error("kernel ", ShapeToString(w.kernel),
                     " must be at least 1 in every dim");
    }
    const std::optional<int64_t> taps = CheckedMul(w.dilation[d], k - 1);
    ASSIGN_OR_RETURN(
        const int64_t span,
        WithinMaxExtent(c, d, "dilation", w.dilation, "dilated kernel extent",
                        taps ? CheckedAdd(*taps, 1) : std::nullopt));
    const int64_t end = w.padding_end.empty() ? w.padding[d] : w.padding_end[d];
    const std::optional<int64_t> pads = CheckedAdd(w.padding[d], end);
    ASSIGN_OR_RETURN(
        const int64_t padded,
        WithinMaxExtent(c, d, "padding", w.padding, "padded input extent",
                        pads ? CheckedAdd(in, *pads) : std::nullopt));
    RETURN_IF_ERROR(
        WithinMaxExtent(c, d, "stride", w.stride, "stride plus padding",
                        CheckedAdd(w.stride[d], std::max(w.padding[d], end)))
            .status());
    if (span > padded) {
      return c.Error("kernel ", ShapeToString(w.kernel), " (",
                     w.dilation[d] == 1 ? "" : "dilated ", "extent ", span,
                     " in dim ", d, ") is larger than the padded input ",
                     padded, " (", c.Describe(0), " ", ShapeToString(x),
                     ", padding ", w.padding[d], " and ", end, ")");
    }
    out.push_back((padded - span) / w.stride[d] + 1);
  }
  return out;
}

}  // namespace gradserve
