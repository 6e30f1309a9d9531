// A gtest assertion for statuses: the code, and message parts that name the
// culprit.
#ifndef GRADSERVE_TESTS_STATUS_TESTING_H_
#define GRADSERVE_TESTS_STATUS_TESTING_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace gradserve::testing {

inline void ExpectStatus(const absl::Status& status, absl::StatusCode code,
                         const std::vector<std::string>& parts) {
  EXPECT_EQ(status.code(), code) << status;
  for (const std::string& part : parts) {
    EXPECT_NE(status.message().find(part), std::string::npos)
        << "'" << part << "' missing from: " << status;
  }
}

}  // namespace gradserve::testing

#endif  // GRADSERVE_TESTS_STATUS_TESTING_H_
