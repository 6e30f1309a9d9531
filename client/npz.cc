#include "client/npz.h"

#include <zip.h>

#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/atomic_file.h"
#include "client/npy.h"
#include "core/status_macros.h"

namespace gradserve::client {
namespace {

struct ZipCloser {
  void operator()(zip_t* archive) const { zip_discard(archive); }
};
using Archive = std::unique_ptr<zip_t, ZipCloser>;

struct SourceFreer {
  void operator()(zip_source_t* source) const { zip_source_free(source); }
};
using Source = std::unique_ptr<zip_source_t, SourceFreer>;

std::string ErrorText(zip_error_t* error) {
  std::string text = zip_error_strerror(error);
  zip_error_fini(error);
  return text;
}

absl::Status Bad(absl::string_view what, absl::string_view message) {
  return absl::InvalidArgumentError(
      absl::StrCat(what, ": not a readable .npz archive (", message, ")"));
}

// The bytes of member `index`, inflated.
absl::StatusOr<std::string> ReadMember(zip_t* archive, zip_uint64_t index,
                                       const zip_stat_t& stat,
                                       absl::string_view what) {
  zip_file_t* file = zip_fopen_index(archive, index, 0);
  if (file == nullptr) {
    return Bad(what, absl::StrCat(stat.name, ": ", zip_strerror(archive)));
  }
  std::string bytes(stat.size, '\0');
  const zip_int64_t n = zip_fread(file, bytes.data(), stat.size);
  const std::string error = zip_file_strerror(file);
  zip_fclose(file);
  if (n < 0 || static_cast<zip_uint64_t>(n) != stat.size) {
    return Bad(what, absl::StrCat(stat.name, ": ", error));
  }
  return bytes;
}

}  // namespace

absl::StatusOr<Arrays> ParseNpz(absl::string_view bytes,
                                absl::string_view what) {
  zip_error_t error;
  zip_error_init(&error);
  // The source reads `bytes` in place; zip_open_from_source takes it over.
  zip_source_t* source =
      zip_source_buffer_create(bytes.data(), bytes.size(), 0, &error);
  if (source == nullptr) return Bad(what, ErrorText(&error));
  Archive archive(zip_open_from_source(source, ZIP_RDONLY, &error));
  if (archive == nullptr) {
    zip_source_free(source);
    return Bad(what, ErrorText(&error));
  }
  zip_error_fini(&error);
  Arrays arrays;
  const zip_int64_t count = zip_get_num_entries(archive.get(), 0);
  for (zip_int64_t i = 0; i < count; ++i) {
    zip_stat_t stat;
    if (zip_stat_index(archive.get(), i, 0, &stat) != 0) {
      return Bad(what, zip_strerror(archive.get()));
    }
    std::string name = stat.name;
    if (absl::EndsWith(name, "/")) continue;  // a directory entry
    if (!absl::EndsWith(name, ".npy")) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": member '", name, "' is not an .npy file"));
    }
    ASSIGN_OR_RETURN(std::string member,
                     ReadMember(archive.get(), i, stat, what));
    name.resize(name.size() - 4);
    ASSIGN_OR_RETURN(arrays[name],
                     ParseNpy(member, absl::StrCat(what, ": ", name)));
  }
  return arrays;
}

absl::StatusOr<Arrays> ReadNpz(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
  return ParseNpz(bytes, path);
}

absl::StatusOr<std::string> SerializeNpz(const Arrays& arrays, bool compress) {
  // libzip removes an archive left with no members: write the bare end of
  // central directory record that np.savez writes for no arrays.
  if (arrays.empty())
    return std::string("PK\x05\x06", 4) + std::string(18, '\0');
  // Members are added from buffers that must live until the archive closes.
  std::vector<std::string> members;
  members.reserve(arrays.size());
  for (const auto& [name, tensor] : arrays) {
    auto npy = SerializeNpy(tensor);
    if (!npy.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("array '", name, "': ", npy.status().message()));
    }
    members.push_back(*std::move(npy));
  }
  zip_error_t error;
  zip_error_init(&error);
  Source buffer(zip_source_buffer_create(nullptr, 0, 0, &error));
  if (buffer == nullptr) return absl::InternalError(ErrorText(&error));
  zip_source_keep(buffer.get());  // read back after the archive closes
  Archive archive(zip_open_from_source(buffer.get(), ZIP_TRUNCATE, &error));
  if (archive == nullptr) return absl::InternalError(ErrorText(&error));
  zip_error_fini(&error);
  size_t next = 0;
  for (const auto& [name, tensor] : arrays) {
    const std::string& member = members[next++];
    zip_source_t* data =
        zip_source_buffer(archive.get(), member.data(), member.size(), 0);
    const zip_int64_t index =
        data == nullptr ? -1
                        : zip_file_add(archive.get(), (name + ".npy").c_str(),
                                       data, ZIP_FL_ENC_UTF_8);
    if (index < 0) {
      if (data != nullptr) zip_source_free(data);
      return absl::InvalidArgumentError(
          absl::StrCat("array '", name, "': ", zip_strerror(archive.get())));
    }
    zip_set_file_compression(archive.get(), index,
                             compress ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0);
  }
  if (zip_close(archive.get()) != 0) {
    return absl::InternalError(
        absl::StrCat("writing .npz: ", zip_strerror(archive.get())));
  }
  archive.release();  // closed
  zip_stat_t stat;
  if (zip_source_stat(buffer.get(), &stat) != 0 ||
      zip_source_open(buffer.get()) != 0) {
    return absl::InternalError("reading back the .npz image");
  }
  std::string image(stat.size, '\0');
  const zip_int64_t n = zip_source_read(buffer.get(), image.data(), stat.size);
  zip_source_close(buffer.get());
  if (n < 0 || static_cast<zip_uint64_t>(n) != stat.size) {
    return absl::InternalError("reading back the .npz image");
  }
  return image;
}

absl::Status WriteNpz(const std::string& path, const Arrays& arrays,
                      bool compress) {
  auto image = SerializeNpz(arrays, compress);
  if (!image.ok()) {
    return absl::Status(image.status().code(),
                        absl::StrCat(path, ": ", image.status().message()));
  }
  return WriteFileAtomically(path, *image);
}

}  // namespace gradserve::client
