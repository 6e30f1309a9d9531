// CheckGradients, HessianVectorProduct and HessianEigenvalues requests and
// replies between the wire and the runtime's calls, and Diagnostics (of
// Compute and TrainStep) onto the wire.
#ifndef GRADSERVE_SERVER_CODEC_ANALYSIS_CODEC_H_
#define GRADSERVE_SERVER_CODEC_ANALYSIS_CODEC_H_

#include "absl/status/statusor.h"
#include "core/analysis/diagnostics.h"
#include "core/analysis/gradient_check.h"
#include "core/analysis/hessian.h"
#include "gradserve/v1/diagnostics.pb.h"
#include "gradserve/v1/gradient_service.pb.h"
#include "runtime/calls.h"

namespace gradserve::server {

namespace pb = ::gradserve::v1;

// Tolerances of 0 take torch.autograd.gradcheck's defaults.
absl::StatusOr<runtime::CheckGradientsCall> CheckGradientsCallFromProto(
    pb::CheckGradientsRequest& r, const Limits& limits);
void GradientCheckToProto(const GradientCheck& check,
                          pb::CheckGradientsResponse* out);

absl::StatusOr<runtime::HessianVectorProductCall>
HessianVectorProductCallFromProto(pb::HessianVectorProductRequest& r,
                                  const Limits& limits);

absl::StatusOr<runtime::HessianEigenvaluesCall> HessianEigenvaluesCallFromProto(
    pb::HessianEigenvaluesRequest& r, const Limits& limits);
void SpectrumToProto(const HessianSpectrum& spectrum,
                     pb::HessianEigenvaluesResponse* out);

void DiagnosticsToProto(const Diagnostics& diagnostics, pb::Diagnostics* out);

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_CODEC_ANALYSIS_CODEC_H_
