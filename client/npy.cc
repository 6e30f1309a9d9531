#include "client/npy.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/status_macros.h"

namespace gradserve::client {
namespace {

namespace pb = ::gradserve::v1;

constexpr absl::string_view kMagic("\x93NUMPY", 6);

uint32_t LittleEndian(absl::string_view bytes) {
  uint32_t v = 0;
  for (size_t i = bytes.size(); i-- > 0;) {
    v = (v << 8) | static_cast<uint8_t>(bytes[i]);
  }
  return v;
}

// The value of `key` in the header's Python dict literal, as text.
absl::StatusOr<std::string> HeaderValue(absl::string_view header,
                                        absl::string_view key,
                                        absl::string_view what) {
  const std::string quoted = absl::StrCat("'", key, "':");
  size_t at = header.find(quoted);
  if (at == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": .npy header has no '", key, "'"));
  }
  absl::string_view rest =
      absl::StripLeadingAsciiWhitespace(header.substr(at + quoted.size()));
  size_t end;
  if (absl::StartsWith(rest, "(")) {
    end = rest.find(')') + 1;
  } else if (absl::StartsWith(rest, "'")) {
    end = rest.find('\'', 1) + 1;
  } else {
    end = rest.find_first_of(",}");
  }
  if (end == 0 || end == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": malformed .npy header value for '", key, "'"));
  }
  return std::string(rest.substr(0, end));
}

struct Descr {
  pb::DataType dtype;
  size_t item_size;
};

absl::StatusOr<Descr> ParseDescr(absl::string_view descr,
                                 absl::string_view what) {
  descr = absl::StripPrefix(absl::StripSuffix(descr, "'"), "'");
  if (descr == "<f4") return Descr{pb::DATA_TYPE_FLOAT32, 4};
  if (descr == "<f8") return Descr{pb::DATA_TYPE_FLOAT32, 8};
  if (descr == "<i8") return Descr{pb::DATA_TYPE_INT64, 8};
  if (descr == "<i4") return Descr{pb::DATA_TYPE_INT64, 4};
  if (descr == "|b1" || descr == "|u1") return Descr{pb::DATA_TYPE_FLOAT32, 1};
  if (absl::StartsWith(descr, ">")) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": big-endian arrays ('", descr,
                     "') are not supported; save with "
                     "arr.astype(arr.dtype.newbyteorder('<'))"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": dtype '", descr,
                   "' is not supported (float32, float64, int64, int32, bool, "
                   "uint8 are)"));
}

}  // namespace

absl::StatusOr<pb::Tensor> ParseNpy(absl::string_view bytes,
                                    absl::string_view what) {
  if (!absl::StartsWith(bytes, kMagic) || bytes.size() < 10) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": not a .npy file (no \\x93NUMPY magic)"));
  }
  const int major = static_cast<uint8_t>(bytes[6]);
  const size_t len_size = major == 1 ? 2 : 4;
  if (major < 1 || major > 3 || bytes.size() < 8 + len_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": unsupported .npy format version ", major));
  }
  const size_t header_len = LittleEndian(bytes.substr(8, len_size));
  const size_t data_start = 8 + len_size + header_len;
  if (bytes.size() < data_start) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": truncated .npy header"));
  }
  absl::string_view header = bytes.substr(8 + len_size, header_len);

  ASSIGN_OR_RETURN(std::string descr_text, HeaderValue(header, "descr", what));
  ASSIGN_OR_RETURN(Descr descr, ParseDescr(descr_text, what));
  ASSIGN_OR_RETURN(std::string fortran,
                   HeaderValue(header, "fortran_order", what));
  if (fortran != "False") {
    return absl::InvalidArgumentError(
        absl::StrCat(what,
                     ": Fortran-ordered arrays are not supported; save "
                     "np.ascontiguousarray(arr)"));
  }
  ASSIGN_OR_RETURN(std::string shape_text, HeaderValue(header, "shape", what));

  pb::Tensor t;
  t.set_dtype(descr.dtype);
  uint64_t count = 1;
  absl::string_view dims =
      absl::StripPrefix(absl::StripSuffix(shape_text, ")"), "(");
  for (absl::string_view d :
       absl::StrSplit(dims, ',', absl::SkipWhitespace())) {
    int64_t dim;
    if (!absl::SimpleAtoi(d, &dim) || dim < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": bad dimension '", d, "' in shape ", shape_text));
    }
    t.add_shape(dim);
    if (dim != 0 && count > (uint64_t{1} << 62) / static_cast<uint64_t>(dim)) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": shape ", shape_text, " is too large"));
    }
    count *= static_cast<uint64_t>(dim);
  }
  absl::string_view data = bytes.substr(data_start);
  if (data.size() != count * descr.item_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", data.size(), " bytes of data, expected ",
                     count * descr.item_size, " for shape ", shape_text));
  }
  const size_t n = static_cast<size_t>(count);
  if (descr.item_size == 4 && descr.dtype == pb::DATA_TYPE_FLOAT32) {
    t.set_data(data.data(), data.size());
  } else if (descr.item_size == 8 && descr.dtype == pb::DATA_TYPE_INT64) {
    t.set_data(data.data(), data.size());
  } else if (descr.item_size == 8) {  // float64 -> float32
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) {
      double x;
      std::memcpy(&x, data.data() + 8 * i, 8);
      v[i] = static_cast<float>(x);
    }
    t.set_data(v.data(), v.size() * sizeof(float));
  } else if (descr.item_size == 4) {  // int32 -> int64
    std::vector<int64_t> v(n);
    for (size_t i = 0; i < n; ++i) {
      int32_t x;
      std::memcpy(&x, data.data() + 4 * i, 4);
      v[i] = x;
    }
    t.set_data(v.data(), v.size() * sizeof(int64_t));
  } else {  // bool / uint8 -> float32
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(data[i]);
    t.set_data(v.data(), v.size() * sizeof(float));
  }
  return t;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot open (", std::strerror(errno), ")"));
  }
  std::ostringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

absl::Status WriteFile(const std::string& path, absl::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    return absl::PermissionDeniedError(
        absl::StrCat(path, ": cannot write (", std::strerror(errno), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<pb::Tensor> ReadNpy(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return ParseNpy(bytes, path);
}

absl::StatusOr<std::string> SerializeNpy(const pb::Tensor& t) {
  std::string descr;
  std::string data;
  if (t.dtype() == pb::DATA_TYPE_FLOAT32) {
    descr = "<f4";
    data = t.float_values_size() > 0
               ? std::string(
                     reinterpret_cast<const char*>(t.float_values().data()),
                     t.float_values_size() * sizeof(float))
               : t.data();
  } else if (t.dtype() == pb::DATA_TYPE_INT64) {
    descr = "<i8";
    data = t.int64_values_size() > 0
               ? std::string(
                     reinterpret_cast<const char*>(t.int64_values().data()),
                     t.int64_values_size() * sizeof(int64_t))
               : t.data();
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot write ", pb::DataType_Name(t.dtype()), " as .npy"));
  }
  std::vector<std::string> dims;
  for (int64_t d : t.shape()) dims.push_back(absl::StrCat(d));
  std::string shape = absl::StrCat("(", absl::StrJoin(dims, ", "),
                                   dims.size() == 1 ? ",)" : ")");
  std::string header =
      absl::StrCat("{'descr': '", descr,
                   "', 'fortran_order': False, 'shape': ", shape, ", }");
  // Pad with spaces so that the data starts on a 64-byte boundary.
  const size_t unpadded = kMagic.size() + 2 + 2 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::string out(kMagic);
  out.push_back('\x01');
  out.push_back('\x00');
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  return absl::StrCat(out, header, data);
}

absl::Status WriteNpy(const std::string& path, const pb::Tensor& t) {
  auto bytes = SerializeNpy(t);
  if (!bytes.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", bytes.status().message()));
  }
  return WriteFile(path, *bytes);
}

}  // namespace gradserve::client
