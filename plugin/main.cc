// zsnap: the containerd proxy snapshotter daemon and layer unpack tool. See plugin/cli.h.
#include <iostream>

#include "plugin/cli.h"

int main(int argc, char** argv) { return zsnap::plugin::RunCli(argc, argv, std::cout, std::cerr); }
