#!/usr/bin/env bash
# Installs the Debian 12 packages gradserve needs, only those that are missing.
# Idempotent; runs apt-get as root or through sudo.
#   tools/install-deps.sh          everything `make test` needs (`make deps`)
#   tools/install-deps.sh build    what building and the C++ tests need (the
#                                  Docker image's build stage)
#   tools/install-deps.sh deploy   what `make test-deploy` adds
#   tools/install-deps.sh fuzz     what `make fuzz` adds (clang, libFuzzer)
set -euo pipefail

build=(
  cmake ninja-build ccache g++ pkg-config make git
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev libdnnl-dev ocl-icd-opencl-dev opencl-headers
  libgtest-dev libgmock-dev libcli11-dev libeigen3-dev
  # gradctl reads and writes .npz (zip) data sets
  libzip-dev
  # ONNX import: protobuf definitions, checker, shape inference, version
  # converter (built against protobuf 3.21, as gradserve is)
  libonnx-dev
  # TLS files checked and tokens hashed with OpenSSL (as gRPC links it)
  libssl-dev
  # the Prometheus /metrics endpoint (--metrics_address)
  libcpp-httplib-dev
  # C++ tests read .npy files that numpy writes
  python3 python3-numpy
)
# PyTorch parity and gRPC clients (Debian's Python: /usr/bin/python3).
python_tests=(
  python3-grpcio python3-grpc-tools python3-torch python3-torchvision python3-pytest
  # the gradserve package (client/python), built offline into build/venv
  python3-venv python3-pip python3-setuptools python3-wheel
  # tools/make-datasets.py: the data sets sklearn ships (digits)
  python3-sklearn
  # ONNX tests: hand-built models (onnx.helper) and ONNX's own backend test
  # data (model.onnx + test_data_set_*/*.pb under /usr/share/libonnx-testdata)
  python3-onnx libonnx-testdata
  libopenblas0-pthread clang-format
  # TLS tests make throwaway certificates with the openssl CLI
  openssl
)
deploy=(podman runc debootstrap uidmap nginx python3-yaml)
# The libFuzzer build (build-fuzz): clang 14 with its sanitizer and fuzzer
# runtimes.
fuzz=(clang libfuzzer-14-dev libclang-rt-14-dev)

# The Node example and buf (npm packages, installed by the tests into build/):
# Debian's nodejs and npm, unless a node and npm are already there (such as
# a nodejs package that bundles npm, which Debian's npm would conflict with).
node_tools=()
command -v node >/dev/null || node_tools+=(nodejs)
command -v npm >/dev/null || node_tools+=(npm)

case "${1:-all}" in
  all) packages=("${build[@]}" "${python_tests[@]}" "${node_tools[@]}") ;;
  build) packages=("${build[@]}") ;;
  deploy) packages=("${deploy[@]}") ;;
  fuzz) packages=("${fuzz[@]}") ;;
  *) echo "usage: $0 [all|build|deploy|fuzz]" >&2; exit 2 ;;
esac

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; then
  "${sudo[@]}" apt-get update
  "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi
