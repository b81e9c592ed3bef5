#include "agent/cli.hpp"

int main(int argc, char** argv) { return meshd::agent::cli_main(argc, argv); }
