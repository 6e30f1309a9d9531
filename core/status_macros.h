// RETURN_IF_ERROR / ASSIGN_OR_RETURN, shaped like the macros of later Abseil
// releases (Abseil 20220623 ships none).
#ifndef GRADSERVE_CORE_STATUS_MACROS_H_
#define GRADSERVE_CORE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define GS_STATUS_CONCAT_INNER_(a, b) a##b
#define GS_STATUS_CONCAT_(a, b) GS_STATUS_CONCAT_INNER_(a, b)

// Returns the status of `expr` from the enclosing function when it is not OK.
#define RETURN_IF_ERROR(expr)                                    \
  do {                                                           \
    ::absl::Status gs_status_ = (expr);                          \
    if (ABSL_PREDICT_FALSE(!gs_status_.ok())) return gs_status_; \
  } while (false)

// `ASSIGN_OR_RETURN(auto x, MakeX());` declares/assigns x from a StatusOr, or
// returns its status from the enclosing function.
#define ASSIGN_OR_RETURN(lhs, rexpr)                                        \
  GS_ASSIGN_OR_RETURN_IMPL_(GS_STATUS_CONCAT_(gs_statusor_, __LINE__), lhs, \
                            rexpr)

#define GS_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                              \
  if (ABSL_PREDICT_FALSE(!statusor.ok())) {             \
    return std::move(statusor).status();                \
  }                                                     \
  lhs = std::move(statusor).value()

#endif  // GRADSERVE_CORE_STATUS_MACROS_H_
