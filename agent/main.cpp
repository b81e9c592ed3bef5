// Placeholder until the agent lands (replaced by agent/cli.cpp wiring).
int main() { return 1; }
