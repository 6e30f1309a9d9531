#include "core/attributes.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status_macros.h"

namespace gradserve {

absl::string_view AttrTypeName(AttrType type) {
  switch (type) {
    case AttrType::kInt:
      return "int";
    case AttrType::kFloat:
      return "float";
    case AttrType::kString:
      return "string";
    case AttrType::kInts:
      return "ints";
    case AttrType::kFloats:
      return "floats";
  }
  return "unknown";
}

AttrType TypeOf(const AttrValue& value) {
  return static_cast<AttrType>(value.index());
}

std::string AttrValueToString(const AttrValue& value) {
  switch (TypeOf(value)) {
    case AttrType::kInt:
      return absl::StrCat(std::get<int64_t>(value));
    case AttrType::kFloat:
      return absl::StrCat(std::get<double>(value));
    case AttrType::kString:
      return absl::StrCat("\"", std::get<std::string>(value), "\"");
    case AttrType::kInts:
      return absl::StrCat(
          "[", absl::StrJoin(std::get<std::vector<int64_t>>(value), ", "), "]");
    case AttrType::kFloats:
      return absl::StrCat(
          "[", absl::StrJoin(std::get<std::vector<double>>(value), ", "), "]");
  }
  return "";
}

absl::StatusOr<Attributes> Attributes::Create(
    absl::string_view node, absl::string_view op, AttrMap given,
    const std::vector<AttrSpec>& specs) {
  Attributes attrs;
  attrs.label_ = absl::StrCat("node '", node, "' (", op, ")");
  const std::string& label = attrs.label_;
  for (auto& [name, value] : given) {
    const AttrSpec* spec = nullptr;
    for (const AttrSpec& s : specs) {
      if (s.name == name) spec = &s;
    }
    if (spec == nullptr) {
      std::vector<std::string> known;
      for (const AttrSpec& s : specs) known.push_back(s.name);
      return absl::InvalidArgumentError(absl::StrCat(
          label, ": unknown attribute '", name, "' (expected ",
          known.empty() ? "none" : absl::StrJoin(known, ", "), ")"));
    }
    AttrType type = TypeOf(value);
    bool fits = type == spec->type ||
                (spec->or_string && type == AttrType::kString) ||
                (spec->type == AttrType::kFloat && type == AttrType::kInt) ||
                (spec->type == AttrType::kInts && type == AttrType::kInt) ||
                (spec->type == AttrType::kFloats &&
                 (type == AttrType::kInts || type == AttrType::kFloat ||
                  type == AttrType::kInt));
    if (!fits) {
      return absl::InvalidArgumentError(absl::StrCat(
          label, ": attribute '", name, "' must be ", AttrTypeName(spec->type),
          spec->or_string ? " or string" : "", ", got ", AttrTypeName(type),
          " ", AttrValueToString(value)));
    }
    // Normalise to the declared type.
    if (spec->type == AttrType::kFloat && type == AttrType::kInt) {
      value = static_cast<double>(std::get<int64_t>(value));
    } else if (spec->type == AttrType::kFloats && type != AttrType::kFloats) {
      std::vector<double> v;
      if (type == AttrType::kInts) {
        for (int64_t x : std::get<std::vector<int64_t>>(value)) v.push_back(x);
      } else if (type == AttrType::kInt) {
        v.push_back(static_cast<double>(std::get<int64_t>(value)));
      } else {
        v.push_back(std::get<double>(value));
      }
      value = std::move(v);
    }
    // No op means anything by a NaN or infinite attribute.
    bool finite = true;
    if (TypeOf(value) == AttrType::kString) {
      // or_string: a word, not a number.
    } else if (spec->type == AttrType::kFloat) {
      finite = std::isfinite(std::get<double>(value));
    } else if (spec->type == AttrType::kFloats) {
      for (double v : std::get<std::vector<double>>(value)) {
        finite = finite && std::isfinite(v);
      }
    }
    if (!finite) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": attribute '", name, "' must be finite, got ",
                       AttrValueToString(value)));
    }
    attrs.values_[name] = std::move(value);
  }
  for (const AttrSpec& s : specs) {
    if (attrs.values_.contains(s.name)) continue;
    if (!s.default_value.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": attribute '", s.name, "' (",
                       AttrTypeName(s.type), ") is required"));
    }
    attrs.values_[s.name] = *s.default_value;
  }
  return attrs;
}

bool Attributes::IsString(absl::string_view name) const {
  return TypeOf(values_.at(name)) == AttrType::kString;
}

bool Attributes::IsInt(absl::string_view name) const {
  return TypeOf(values_.at(name)) == AttrType::kInt;
}

int64_t Attributes::GetInt(absl::string_view name) const {
  return std::get<int64_t>(values_.at(name));
}

double Attributes::GetFloat(absl::string_view name) const {
  return std::get<double>(values_.at(name));
}

const std::string& Attributes::GetString(absl::string_view name) const {
  return std::get<std::string>(values_.at(name));
}

std::vector<double> Attributes::GetFloats(absl::string_view name) const {
  return std::get<std::vector<double>>(values_.at(name));
}

absl::StatusOr<std::vector<int64_t>> Attributes::GetInts(absl::string_view name,
                                                         size_t length) const {
  const AttrValue& value = values_.at(name);
  if (TypeOf(value) == AttrType::kInt) {
    return std::vector<int64_t>(length == 0 ? 1 : length,
                                std::get<int64_t>(value));
  }
  const auto& ints = std::get<std::vector<int64_t>>(value);
  if (length != 0 && ints.size() != length) {
    return Invalid(name, absl::StrCat(length, " ints"));
  }
  return ints;
}

absl::StatusOr<std::vector<int64_t>> Attributes::GetIntsInRange(
    absl::string_view name, size_t length, int64_t min, int64_t max) const {
  ASSIGN_OR_RETURN(std::vector<int64_t> ints, GetInts(name, length));
  for (int64_t v : ints) {
    if (v < min || v > max) {
      return Invalid(name, absl::StrCat(">= ", min, " and <= ", max));
    }
  }
  return ints;
}

absl::Status Attributes::Invalid(absl::string_view name,
                                 absl::string_view expected) const {
  auto it = values_.find(name);
  return absl::InvalidArgumentError(absl::StrCat(
      label_, ": attribute '", name, "' must be ", expected, ", got ",
      it == values_.end() ? "nothing" : AttrValueToString(it->second)));
}

}  // namespace gradserve
