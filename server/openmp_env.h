// OpenMP's wait policy, set before OpenMP starts. libgomp's default lets
// idle threads spin for a while before they sleep; when another process is
// busy on the same cores (shared machines, other containers), the spinning
// team members take the CPU from the ones doing the work and a request
// became ~100x slower. libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT when
// it loads, before main, so setting them later has no effect.
#ifndef GRADSERVE_SERVER_OPENMP_ENV_H_
#define GRADSERVE_SERVER_OPENMP_ENV_H_

namespace gradserve::server {

// Unless the environment already chooses (OMP_WAIT_POLICY or
// GOMP_SPINCOUNT set), sets OMP_WAIT_POLICY=passive and starts the program
// again with the same arguments (the same process: exec keeps its id), so
// that OpenMP threads sleep as soon as they are idle. Returns only when the
// environment already chose, or the exec failed (then OpenMP keeps its
// defaults).
void UsePassiveOpenMpWaits(char** argv);

}  // namespace gradserve::server

#endif  // GRADSERVE_SERVER_OPENMP_ENV_H_
