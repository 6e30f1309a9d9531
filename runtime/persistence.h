// Sessions that survive restarts. With a state directory, every session is
// kept there as one file, <session id>.session, written whole to a
// temporary file in the same directory, fsync'd, renamed over the old one,
// and the directory fsync'd: a crash at any moment leaves the old file or
// the new one, never a torn one. Snapshots run every interval (only for
// sessions changed since their last one) and once more at shutdown; a
// closed session's file is deleted when it closes, an expired one's at the
// next snapshot. At start the files are restored: same ids, values,
// optimizer state and step, so a restored session's next TrainStep is the
// one it would have been. Expiry restarts from the restore (a session gets
// its whole idle TTL again). A file that cannot be read is set aside as
// .corrupt, one the server refuses (over its limits) as .rejected; neither
// stops the others.
//
// How a session is encoded is the server's (a SessionCodec); when, where
// and how atomically it is written is decided here.
#ifndef GRADSERVE_RUNTIME_PERSISTENCE_H_
#define GRADSERVE_RUNTIME_PERSISTENCE_H_

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "core/graph.h"
#include "runtime/sessions.h"

namespace gradserve::runtime {

struct PersistenceOptions {
  std::string state_dir;  // empty: sessions are not persisted
  absl::Duration snapshot_interval = absl::Seconds(30);
};

// A session's bytes in a file and back. Decode errors name what is wrong;
// the caller adds the file.
class SessionCodec {
 public:
  virtual ~SessionCodec() = default;
  virtual absl::StatusOr<std::string> Encode(const SessionSpec& spec) const = 0;
  virtual absl::StatusOr<SessionSpec> Decode(absl::string_view bytes) const = 0;
};

// The spec that recreates `session` with the values of `values`.
SessionSpec SpecOf(const Session& session, const ValueSet& values);

struct RestoreReport {
  int restored = 0;
  int set_aside = 0;     // renamed to .corrupt or .rejected
  int temp_removed = 0;  // left by a crash before their rename
};

struct SnapshotReport {
  int written = 0;
  int deleted = 0;  // files of sessions that expired
  int failed = 0;   // logged; retried at the next snapshot
};

class SessionPersistence {
 public:
  // Creates the directory if needed and locks it (another process holding
  // it is FAILED_PRECONDITION).
  static absl::StatusOr<std::unique_ptr<SessionPersistence>> Open(
      const PersistenceOptions& options,
      std::shared_ptr<const SessionCodec> codec, SessionManager* sessions,
      const Limits& limits);
  ~SessionPersistence();  // stops the periodic snapshots; writes nothing

  // Recreates the saved sessions in the manager; call before serving.
  RestoreReport Restore();
  // Snapshots every interval on a thread of its own, until Stop.
  void Start();
  void Stop();
  // Writes the sessions changed since their last snapshot (outside every
  // lock a request takes) and deletes the files of sessions gone.
  SnapshotReport Snapshot();
  // The last snapshot, at shutdown once no call is in flight: Stop, then
  // Snapshot, logged.
  SnapshotReport StopAndSnapshot();
  // A closed session: its file is deleted now, and no snapshot running
  // meanwhile brings it back.
  void Forget(const std::string& session_id);

  const std::string& dir() const { return dir_; }

 private:
  SessionPersistence(const PersistenceOptions& options,
                     std::shared_ptr<const SessionCodec> codec,
                     SessionManager* sessions, const Limits& limits);
  std::string PathOf(const std::string& id) const;
  // Restores one <id>.session file; false when it was set aside.
  bool RestoreFile(const std::string& file, const std::string& id);
  // False when the session closed or expired meanwhile (nothing written).
  absl::StatusOr<bool> Write(const Session& session, const ValueSet& values);
  void Loop();

  const std::string dir_;
  const absl::Duration interval_;
  const std::shared_ptr<const SessionCodec> codec_;
  SessionManager* const sessions_;
  const Limits limits_;
  int lock_fd_ = -1;

  std::mutex pass_mu_;                    // one snapshot at a time
  std::map<std::string, int64_t> saved_;  // id -> version in its file
  std::mutex files_mu_;  // a rename into place against Forget's delete

  std::mutex loop_mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread loop_;
};

}  // namespace gradserve::runtime

#endif  // GRADSERVE_RUNTIME_PERSISTENCE_H_
