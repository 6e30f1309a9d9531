#include <unistd.h>

#include <iostream>

#include "client/gradctl.h"

int main(int argc, char** argv) {
  return gradserve::client::RunGradctl(argc, argv, std::cout, std::cerr,
                                       isatty(STDOUT_FILENO) == 1);
}
