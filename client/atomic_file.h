// Files written so that a reader (or a run resumed after a crash) sees either
// the old contents or the new, never a torn mix.
#ifndef GRADSERVE_CLIENT_ATOMIC_FILE_H_
#define GRADSERVE_CLIENT_ATOMIC_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace gradserve::client {

// Writes `bytes` to a temporary file beside `path`, flushes it to disk,
// renames it over `path` and flushes the directory. Errors name the path.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view bytes);

// Flushes a directory's entries (after a rename or create in it).
absl::Status SyncDirectory(const std::string& dir);

// Creates `dir` and its parents when missing.
absl::Status MakeDirectories(const std::string& dir);

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_ATOMIC_FILE_H_
